"""Convergence figures and summary tables (the only module that imports matplotlib)."""

from __future__ import annotations

import numpy as np

from .results import read_results

__all__ = ["summarize", "format_summary", "summary_rows", "plot_convergence", "plot_inversion",
           "scheme_styles"]


def _matplotlib():
    """matplotlib, or an error that says how to install it (the benchmark's extra)."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ImportError("the figures need matplotlib: pip install 'hoag_shine[bench]'") from None
    import matplotlib.ticker  # noqa: F401
    return matplotlib


def _runs(cols):
    """Group row indices by (dataset, scheme, seed), in file order."""
    groups = {}
    for i, key in enumerate(zip(cols["dataset"], cols["scheme"], cols["seed"])):
        groups.setdefault(key, []).append(i)
    return groups


def _best_per_seed(cols):
    best = {}
    for d, s, h in zip(cols["dataset"], cols["seed"], cols["heldout_loss"]):
        if np.isfinite(h):
            best[(d, s)] = min(best.get((d, s), np.inf), h)
    return best


def summarize(results, *, rel_target=0.01):
    """Per dataset and scheme: time to reach the target and time per iteration.

    The target of a seed is ``(1 + rel_target)`` times the lowest held-out loss
    any scheme reached on that seed.

    Parameters
    ----------
    results : str, Path or dict
        A results CSV, a benchmark folder, or columns from ``read_results``.
    rel_target : float, default=0.01

    Returns
    -------
    rows : list of dict
        ``dataset, scheme, label, n_seeds, n_reached, median_time_to_target``
        (over all seeds, ``inf`` counting as never; ``inf`` if fewer than half
        reach), ``median_time_to_target_reached`` (over the seeds that reach),
        ``median_final_excess`` (relative held-out excess at the end),
        ``median_forward_time``, ``median_backward_time`` (per outer iteration),
        ``median_total_time``.
    """
    cols = results if isinstance(results, dict) else read_results(results)
    best = _best_per_seed(cols)
    per = {}
    for (d, s, seed), idx in _runs(cols).items():
        idx = np.array(idx)
        target = (1 + rel_target) * best[(d, seed)]
        h = cols["heldout_loss"][idx]
        t = cols["time"][idx]
        hit = np.flatnonzero(h <= target)
        e = per.setdefault((d, s), dict(label=cols["label"][idx[0]], ttt=[], excess=[], fwd=[],
                                        bwd=[], total=[]))
        e["ttt"].append(t[hit[0]] if hit.size else np.inf)
        finite = h[np.isfinite(h)]
        e["excess"].append(finite[-1] / best[(d, seed)] - 1 if finite.size else np.nan)
        e["fwd"].extend(cols["forward_time"][idx])
        e["bwd"].extend(cols["backward_time"][idx])
        e["total"].append(t[-1])
    rows = []
    for (d, s), e in per.items():
        ttt = np.array(e["ttt"])
        reached = ttt[np.isfinite(ttt)]
        rows.append(dict(
            dataset=d, scheme=s, label=e["label"], n_seeds=len(ttt), n_reached=len(reached),
            median_time_to_target=float(np.median(ttt)) if len(reached) * 2 >= len(ttt)
            else np.inf,
            median_time_to_target_reached=float(np.median(reached)) if len(reached) else np.inf,
            median_final_excess=float(np.nanmedian(e["excess"])),
            median_forward_time=float(np.median(e["fwd"])),
            median_backward_time=float(np.median(e["bwd"])),
            median_total_time=float(np.median(e["total"])),
        ))
    return rows


#: Columns of the summary as CSV: one value per cell (``inf``: never reached).
SUMMARY_COLUMNS = ("dataset", "scheme", "label", "n_seeds", "n_reached",
                   "median_time_to_target", "median_time_to_target_reached",
                   "median_final_excess", "median_forward_time", "median_backward_time",
                   "median_total_time", "rel_target")


def summary_rows(rows, *, rel_target=0.01):
    """:func:`summarize`'s rows as CSV records (numbers only; ``inf`` for never)."""
    return [{**{k: r[k] for k in SUMMARY_COLUMNS if k in r}, "rel_target": rel_target}
            for r in rows]


def format_summary(rows, *, rel_target=0.01) -> str:
    """A Markdown table of :func:`summarize`'s rows."""
    pct = f"{100 * rel_target:g}%"
    lines = [
        f"| dataset | scheme | seeds within {pct} | median time to {pct} (s) | "
        "median final excess | forward / iter (s) | backward / iter (s) | run time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ttt = r["median_time_to_target"]
        ttt = "never" if not np.isfinite(ttt) else f"{ttt:.2f}"
        lines.append(
            f"| {r['dataset']} | {r['label']} | {r['n_reached']}/{r['n_seeds']} | {ttt} | "
            f"{100 * r['median_final_excess']:.2f}% | {r['median_forward_time']:.3g} | "
            f"{r['median_backward_time']:.3g} | {r['median_total_time']:.1f} |"
        )
    return "\n".join(lines)


#: Scheme families (matched on the scheme's name) and the colour map each draws from.
_LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))
#: Seeds needed to draw a 10-90% band (with fewer, the band is just the extremes).
MIN_SEEDS_FOR_BAND = 5


#: Fixed colours of the shipped schemes: a scheme keeps its colour whatever the selection.
SCHEME_COLORS = {
    "shine": "tab:blue", "shine-tight": "tab:cyan", "shine-refine": "tab:purple",
    "shine-opa": "tab:green", "shine-paper": "navy", "numpy-shine": "tab:blue",
    "hoag-cg": "tab:orange", "cg": "tab:orange", "hoag-paper": "saddlebrown",
    "numpy-hoag": "tab:orange", "truncated-cg": "goldenrod", "jacobian-free": "tab:red",
    "grid": "dimgray", "random": "darkgray", "sklearn-cv": "tab:pink",
}

#: Curves at most per panel: more schemes are spread over rows of panels.
MAX_CURVES = 6


def scheme_styles(schemes):
    """A (colour, line style) for every scheme that does not depend on which others
    are drawn: the shipped schemes have fixed colours, others one of ``tab10`` chosen
    from their name.

    Returns
    -------
    styles : dict
        ``scheme -> (colour, linestyle)``.
    """
    tab = _matplotlib().colormaps["tab10"]
    styles = {}
    for s in schemes:
        key = s.lower()
        if key in SCHEME_COLORS:
            styles[s] = (SCHEME_COLORS[key], "-" if "shine" in key else "--")
        else:
            code = sum(map(ord, key))
            styles[s] = (tab(code % 10), _LINESTYLES[(code // 10) % len(_LINESTYLES)])
    return styles


def scheme_groups(schemes):
    """The schemes as panel rows of at most :data:`MAX_CURVES`: the SHINE family first,
    then the others (HOAG, Jacobian-Free, searches, scikit-learn)."""
    shine = [s for s in schemes if "shine" in s.lower()]
    rest = [s for s in schemes if s not in shine]
    groups = []
    for family in (shine, rest):
        for k in range(0, len(family), MAX_CURVES):
            groups.append(family[k:k + MAX_CURVES])
    return [g for g in groups if g] or [list(schemes)]


def _excess_curves(cols, runs, keys, best, grid):
    """Relative held-out excess ``h / best - 1`` of each run, on a common time grid."""
    curves = []
    for key in keys:
        idx = np.array(runs[key])
        t = cols["time"][idx]
        h = cols["heldout_loss"][idx] / best[(key[0], key[2])] - 1.0
        pos = np.searchsorted(t, grid, side="right") - 1
        curves.append(np.where(pos >= 0, h[np.maximum(pos, 0)], np.nan))
    return np.array(curves)


#: The floor of the (log) excess axis, in percent: a seed's best run is drawn there.
FLOOR = 0.01


def _draw_dataset(ax, cols, runs, best, d, schemes, styles, rel_target):
    keys = [k for k in runs if k[0] == d and k[1] in schemes]
    t_all = cols["time"][[i for k in keys for i in runs[k]]]
    t_all = t_all[t_all > 0]
    grid = np.geomspace(t_all.min(), t_all.max(), 300)
    n_seeds = len({k[2] for k in keys})
    keys = [k for k in runs if k[0] == d]
    for s in schemes:
        curves = _excess_curves(cols, runs, [k for k in keys if k[1] == s], best, grid)
        if not len(curves):
            continue
        enough = np.sum(np.isfinite(curves), axis=0) * 2 >= len(curves)
        if not enough.any():
            continue
        with np.errstate(all="ignore"):
            med = np.maximum(100 * np.nanmedian(curves[:, enough], axis=0), FLOOR)
            lo, hi = np.maximum(100 * np.nanpercentile(curves[:, enough], [10, 90], axis=0),
                                FLOOR)
        label = cols["label"][runs[next(k for k in keys if k[1] == s)][0]]
        color, ls = styles[s]
        ax.plot(grid[enough], med, color=color, ls=ls, label=label, lw=2,
                drawstyle="steps-post")
        if len(curves) >= MIN_SEEDS_FOR_BAND:
            # Fainter bands the more schemes share the panel: a few stay readable,
            # eleven would otherwise smear into one grey.
            ax.fill_between(grid[enough], lo, hi, color=color, alpha=0.12, step="post", lw=0)
    ax.axhline(100 * rel_target, color="k", lw=1, ls=":",
               label=f"target: {100 * rel_target:g}% above the best")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8 * FLOOR)
    ax.set_xlabel("wall time (s, log)")
    ax.set_ylabel(f"held-out loss above the seed's best, % (log; lower is better; the best "
                  f"run at {FLOOR:g})", fontsize=8)
    band = (f"median, 10-90% band over {n_seeds} seeds" if n_seeds >= MIN_SEEDS_FOR_BAND
            else f"median over {n_seeds} seed{'s' * (n_seeds > 1)}")
    ax.set_title(f"{d}: {band}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_minor_formatter(_matplotlib().ticker.NullFormatter())


def plot_convergence(results, path, *, title=None, rel_target=0.01):
    """Held-out loss above each seed's best against wall time: median and 10-90% band.

    One panel per dataset (as Fig. 1 of the SHINE paper) and per group of at most
    :data:`MAX_CURVES` schemes (:func:`scheme_groups`). The excess is relative
    (``100 (h / best - 1)`` percent) on a log axis whose floor, :data:`FLOOR`,
    holds a seed's best run; the target of :func:`summarize` is drawn. The band is
    drawn with at least ``MIN_SEEDS_FOR_BAND`` seeds. Before its first record a
    run has no value; a curve is drawn where at least half of the seeds have
    one. Each scheme keeps its colour whatever the selection (:func:`scheme_styles`).
    Matplotlib's object-oriented API is used: the caller's backend is never
    switched.

    Parameters
    ----------
    results : str, Path or dict
    path : str or Path
        Output image (PNG, PDF, SVG...).
    title : str, default=None
        Default: the datasets, the number of seeds and what is plotted.
    rel_target : float, default=0.01

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    Figure = _matplotlib().figure.Figure

    cols = results if isinstance(results, dict) else read_results(results)
    best = _best_per_seed(cols)
    runs = _runs(cols)
    datasets = list(dict.fromkeys(cols["dataset"]))
    schemes = list(dict.fromkeys(cols["scheme"]))
    styles = scheme_styles(schemes)
    groups = scheme_groups(schemes)
    fig = Figure(figsize=(max(8.5, 7.0 * len(datasets)), 5.0 * len(groups)))
    axes = fig.subplots(len(groups), len(datasets), squeeze=False)
    for row, group in zip(axes, groups):
        for ax, d in zip(row, datasets):
            _draw_dataset(ax, cols, runs, best, d, group, styles, rel_target)
        row[-1].legend(fontsize=8, loc="upper right", framealpha=0.8)
    seeds = sorted(set(int(v) for v in cols["seed"]))
    fig.suptitle(title or f"{', '.join(datasets)}: held-out loss against time, "
                 f"{len(schemes)} scheme{'s' * (len(schemes) > 1)}, "
                 f"{len(seeds)} seed{'s' * (len(seeds) > 1)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_inversion(results, path, *, title=None):
    """Norm ratio against cosine of the L-BFGS inverse, per direction kind (Fig. 2, right).

    Parameters
    ----------
    results : dict
        From :func:`hoag_shine.diagnostics.inversion_experiment`.
    path : str or Path
    title : str, default=None

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    Figure = _matplotlib().figure.Figure

    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    colors = {"prescribed": "tab:red", "krylov": "tab:blue", "random": "tab:green"}
    markers = {"opa": "o", "no-opa": "x"}
    for key, per in results.items():
        for kind, vals in per.items():
            ax.scatter(vals[:, 1], vals[:, 0], s=18, alpha=0.6, c=colors[kind],
                       marker=markers[key], label=f"{kind}, {'OPA' if key == 'opa' else 'no OPA'}")
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.axvline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("cosine(L-BFGS inverse . d, exact inverse . d)")
    ax.set_ylabel("||L-BFGS inverse . d|| / ||exact inverse . d||")
    ax.set_title(title or "Inversion quality of the L-BFGS memory")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


#: One colour per backward strategy of the implicit-model benchmark, whatever the selection.
DEQ_COLORS = {"exact": "black", "shine": "tab:blue", "shine-fallback": "tab:cyan",
              "shine-refine": "tab:purple", "shine-opa": "tab:green",
              "jacobian-free": "tab:red"}


def plot_deq(rows, path, *, title=None):
    """The implicit-model benchmark in three panels: backward time per batch, the
    cosine of each strategy's gradient with the exact one along training (regime
    near 1), and test accuracy (medians over seeds; lower time, higher cosine and
    accuracy are better)."""
    Figure = _matplotlib().figure.Figure
    strategies = [s for s in DEQ_COLORS if any(r["strategy"] == s for r in rows)]
    datasets = sorted({r["dataset"] for r in rows})
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    fig = Figure(figsize=(15, 4.6))
    axes = fig.subplots(1, 3)
    width = 0.8 / max(len(strategies), 1)
    slots = [(d, g) for d in datasets for g in regimes]
    for i, s in enumerate(strategies):
        for panel, key in ((axes[0], "backward_ms"), (axes[2], "accuracy")):
            vals = [np.median([r[key] for r in rows if (r["dataset"], r["regime"],
                                                        r["strategy"]) == (d, g, s)] or [np.nan])
                    for d, g in slots]
            panel.bar(np.arange(len(slots)) + i * width, vals, width, color=DEQ_COLORS[s],
                      label=s)
        near = [r for r in rows if r["strategy"] == s and r["regime"] == regimes[-1]]
        if near:
            n = min(len(r["cosines"]) for r in near)
            if n:
                med = np.median([r["cosines"][:n] for r in near], axis=0)
                exact = s == "exact"  # (drawn dashed on top: the strategies at 1 hide it)
                axes[1].plot(np.arange(1, n + 1), med, color=DEQ_COLORS[s], lw=2, label=s,
                             ls="--" if exact else "-", zorder=5 if exact else 2)
    labels = [f"{d}\n{g}" for d, g in slots]
    for ax in (axes[0], axes[2]):
        ax.set_xticks(np.arange(len(slots)) + 0.4 - width / 2, labels)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("backward time per batch, ms (log; lower is better)")
    axes[1].set_xlabel("gradient probe along training (every few batches; "
                       f"{regimes[-1]}, all data sets)")
    axes[1].set_ylabel("cosine with the exact gradient (higher is better)")
    axes[1].set_ylim(min(0.0, axes[1].get_ylim()[0]), 1.02)
    accs = [r["accuracy"] for r in rows]
    axes[2].set_ylim(max(0.0, min(accs) - 0.05), min(1.0, max(accs) + 0.02))
    axes[2].set_ylabel("test accuracy (higher is better)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=max(len(names), 1), fontsize=9,
               frameon=False)
    fig.suptitle(title or "Equilibrium classifier: backward strategies (medians over seeds)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
