"""README.md as a newcomer meets it: every command parses, every figure exists, the
examples run, and it speaks of the software only."""

import re
import shlex
import warnings
from pathlib import Path

import pytest

from conftest import load_benchmark
from hoag_shine.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands():
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                if part.strip():
                    lines.append(part.strip())
    return lines


def test_the_two_commands_come_first():
    first = _blocks("bash")[0].splitlines()
    assert first[0].startswith('pip install ".[bench,test]" && hoag-shine bench')
    assert first[1].startswith("python -m pytest -q")


@pytest.mark.parametrize("command", _commands())
def test_every_command_parses(command):
    args = shlex.split(command)
    if args[0] == "hoag-shine":
        if args[1:] == ["--version"]:
            return
        build_parser().parse_args(args[1:])  # (exits on an unknown option)
    elif args[:3] == ["python", "-m", "pytest"]:
        return
    elif args[0] == "python" and args[1].startswith("benchmarks/"):
        # (in this process: the benchmark's own parser reads the command's options;
        # deq.py is `hoag-shine deq`)
        if args[1] == "benchmarks/deq.py":
            build_parser().parse_args(["deq", *args[2:]])
        else:
            load_benchmark(args[1]).build_parser().parse_args(args[2:])
    elif args[0] == "pip":
        assert args[1] == "install"
    else:
        pytest.fail(f"README shows a command the tests do not know: {command}")


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")
                                        if p.name != "deq.py"))
def test_every_benchmark_option_has_help(path):
    parser = load_benchmark(f"benchmarks/{path}").build_parser()
    for action in parser._actions:
        assert action.help, (path, action.dest)


def test_every_figure_and_link_exists():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), target
    for page in ("design.md", "implicit.md", "benchmarks.md"):
        text = (ROOT / "docs" / page).read_text()
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if "://" not in target:
                assert (ROOT / "docs" / target).exists(), (page, target)


def test_it_speaks_of_the_software_only():
    words = re.findall(r"(?i)\b(this round|last round|session|issue \d+)\b", README)
    words += re.findall(r"\bDESIGN\.md\b|\.\./shared", README)  # the docs/design.md page is fine
    assert not words, words


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_python_examples_run():
    blocks = [b for b in _blocks("python") if "LocalCluster" not in b and "n_jobs=2" not in b]
    namespace = {"__name__": "readme"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["clf"].C_ > 0 and namespace["deq"].score is not None


@pytest.mark.filterwarnings("ignore")
def test_the_cluster_example_runs():
    pytest.importorskip("distributed")
    (block,) = [b for b in _blocks("python") if "LocalCluster" in b]
    namespace = {"__name__": "__main__"}
    exec(compile(block, "README.md", "exec"), namespace)
    from sklearn.datasets import load_breast_cancer

    from hoag_shine import ShineLogisticRegressionCV

    X, y = load_breast_cancer(return_X_y=True)
    assert namespace["clf"].C_ == ShineLogisticRegressionCV(cv=5).fit(X, y).C_
