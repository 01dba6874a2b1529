"""Convergence figures and summary tables (the only module that imports matplotlib)."""

from __future__ import annotations

import numpy as np

from .results import read_results

__all__ = ["summarize", "format_summary", "plot_convergence"]


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


def plot_convergence(results, path, *, title=None):
    """Held-out loss minus each seed's best, against wall time: median and 10-90% band.

    One panel per dataset (as Fig. 1 of the SHINE paper), log-log. Before its
    first record a run has no value; a curve is drawn where at least half of
    the seeds have one. Zero excess (the seed's best run) is drawn at a floor
    four decades below the panel's largest excess.

    Parameters
    ----------
    results : str, Path or dict
    path : str or Path
        Output image (PNG, PDF, SVG...).
    title : str, default=None

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = results if isinstance(results, dict) else read_results(results)
    best = _best_per_seed(cols)
    runs = _runs(cols)
    datasets = list(dict.fromkeys(cols["dataset"]))
    schemes = list(dict.fromkeys(cols["scheme"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(8.5, 6.5 * len(datasets)), 5.5),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, d in zip(axes[0], datasets):
        keys = [k for k in runs if k[0] == d]
        t_all = cols["time"][[i for k in keys for i in runs[k]]]
        t_all = t_all[t_all > 0]
        grid = np.geomspace(t_all.min(), t_all.max(), 300)
        curves_by_scheme = {}
        for s in schemes:
            curves = []
            for key in (k for k in keys if k[1] == s):
                idx = np.array(runs[key])
                t, h = cols["time"][idx], cols["heldout_loss"][idx] - best[(d, key[2])]
                pos = np.searchsorted(t, grid, side="right") - 1
                curves.append(np.where(pos >= 0, h[np.maximum(pos, 0)], np.nan))
            if curves:
                curves_by_scheme[s] = np.array(curves)
        # Log scale: a seed's best run reaches exactly 0, drawn at a floor
        # four decades under the largest excess.
        top = max(np.nanmax(c) for c in curves_by_scheme.values())
        floor = 1e-4 * top if top > 0 else 1e-12
        for j, (s, curves) in enumerate(curves_by_scheme.items()):
            enough = np.sum(np.isfinite(curves), axis=0) * 2 >= len(curves)
            if not enough.any():
                continue
            with np.errstate(all="ignore"):
                med = np.nanmedian(curves[:, enough], axis=0)
                lo, hi = np.nanpercentile(curves[:, enough], [10, 90], axis=0)
            label = cols["label"][runs[next(k for k in keys if k[1] == s)][0]]
            color = colors[j % len(colors)]
            ax.plot(grid[enough], np.maximum(med, floor), color=color, label=label, lw=2,
                    drawstyle="steps-post")
            ax.fill_between(grid[enough], np.maximum(lo, floor), np.maximum(hi, floor),
                            color=color, alpha=0.15, step="post")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.8 * floor)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("held-out loss - best held-out loss")
        n_seeds = len({k[2] for k in keys})
        ax.set_title(f"{d} ({n_seeds} seeds: median, 10-90% band)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
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
    plt.close(fig)
    return fig
