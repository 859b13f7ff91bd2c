"""Posterior plots: training history, interval and marginal plots of one or more posteriors.

Each function takes data and a path, writes a PNG and returns the figure. The
validation figures (SBC, recovery, predictive checks, ...) are in
:mod:`amortize.diagnostics.validation_figures`.
"""

from __future__ import annotations

import numpy as np

from amortize.diagnostics._matplotlib import plt, save

__all__ = ["plot_history", "plot_intervals", "plot_marginals"]


def plot_history(history: dict, path=None):
    """Training loss per step (smoothed) and validation loss.

    Parameters
    ----------
    history : dict
        As returned by :meth:`Amortizer.fit`.
    path : str or Path, optional
        PNG file to write.
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    steps, loss = np.asarray(history["step"]), np.asarray(history["loss"], float)
    window = max(1, len(loss) // 100)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    ax.plot(steps, loss, color="0.8", lw=0.6, label="training (per step)")
    ax.plot(steps[window - 1 :], smooth, color="C0", lw=1.5, label=f"training ({window}-step mean)")
    ax.plot(history["val_step"], history["val_loss"], "o-", color="C1", ms=3, label="validation")
    finite = np.concatenate([smooth, np.asarray(history["val_loss"], float)])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        low, high = np.percentile(finite, [0, 95])
        ax.set_ylim(low - 0.1 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
    ax.set_xlabel("step")
    ax.set_ylabel("negative log posterior density")
    ax.set_title("Training history")
    ax.legend(frameon=False)
    return save(fig, path)


def _flat_variables(tree, var_names):
    posterior = tree["posterior"].to_dataset()
    rows = []
    for name in var_names or list(posterior.data_vars):
        da = posterior[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        values = da.values.reshape(-1, *da.shape[2:])
        if not extra:
            rows.append((name, values))
            continue
        flat = values.reshape(values.shape[0], -1)
        labels = np.array(np.meshgrid(*[da[d].values for d in extra], indexing="ij")).reshape(len(extra), -1).T
        for k in range(flat.shape[1]):
            rows.append((f"{name}[{', '.join(map(str, labels[k]))}]", flat[:, k]))
    return rows


def _series(posteriors, reference) -> list[tuple[str, object]]:
    """(label, tree) pairs to draw: one tree, or a mapping of label → tree, then the reference tree."""
    if hasattr(posteriors, "children"):
        series = [("amortized", posteriors)]
    else:
        series = list(dict(posteriors).items())
    if reference is not None and hasattr(reference, "children"):
        series.append(("reference", reference))
    return series


def plot_intervals(posteriors, var_names=None, path=None, reference=None, *, prob: float = 0.89):
    """Forest plot: median, 50% and ``prob`` central intervals of each variable, one row per parameter.

    Parameters
    ----------
    posteriors : xarray.DataTree or mapping of label → DataTree
        Posteriors as :meth:`Amortizer.sample` returns them (e.g. amortized and
        refined); each is drawn in its own colour, offset within the row.
    var_names : list of str, optional
    path : str or Path, optional
    reference : xarray.DataTree, optional
        A reference posterior (NUTS, posteriordb) drawn the same way, so the
        comparison is like for like. A mapping of label → (mean, sd) is still
        accepted and drawn as mean ± sd.
    prob : float
        Outer interval (0.89, ArviZ's default for summaries).
    """
    series = _series(posteriors, reference)
    rows = [label for label, _ in _flat_variables(series[0][1], var_names)]
    tails = 100 * (1 - prob) / 2
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) * max(1, len(series) / 2) + 1.4))
    step = 0.6 / max(len(series), 1)
    for k, (name, tree) in enumerate(series):
        values = dict(_flat_variables(tree, var_names))
        colour = "0.2" if name == "reference" else f"C{k}"
        for i, label in enumerate(rows):
            if label not in values:
                continue
            q = np.percentile(values[label], [tails, 25, 50, 75, 100 - tails])
            y = len(rows) - 1 - i + 0.3 - step * (k + 0.5)
            ax.plot([q[0], q[4]], [y, y], color=colour, lw=1.2)
            ax.plot([q[1], q[3]], [y, y], color=colour, lw=3.5, label=name if i == 0 else None)
            ax.plot(q[2], y, "o", color="white", mec=colour, ms=4.5)
    if isinstance(reference, dict):
        for i, label in enumerate(rows):
            if label in reference:
                mean, sd = reference[label]
                ax.errorbar(mean, len(rows) - 1 - i - 0.3, xerr=sd, fmt="s", color="0.2", ms=4, lw=1,
                            label="reference mean ± sd" if i == 0 else None)
    ax.set_yticks(range(len(rows)), rows[::-1])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("parameter value")
    ax.set_title(f"Posterior medians, 50% and {100 * prob:.0f}% central intervals")
    ax.grid(axis="x", color="0.9")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path)


def plot_marginals(posteriors, var_names=None, path=None, reference=None, max_panels: int = 12):
    """Marginal posterior density of each scalar parameter (histograms), overlaid per posterior.

    Parameters
    ----------
    posteriors : xarray.DataTree or mapping of label → DataTree
    var_names : list of str, optional
    path : str or Path, optional
    reference : xarray.DataTree, optional
        Drawn as a grey outline.
    max_panels : int

    The x-range of each panel spans the central 99% of the draws (the median
    of the posteriors' ranges, so one posterior with wild tails does not
    squash the others); draws outside it are counted in the panel.
    """
    series = _series(posteriors, reference)
    rows = [label for label, _ in _flat_variables(series[0][1], var_names)][:max_panels]
    values = [dict(_flat_variables(tree, var_names)) for _, tree in series]
    cols = min(4, len(rows))
    nrows = int(np.ceil(len(rows) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.1 * cols, 2.5 * nrows), squeeze=False)
    for ax, label in zip(axes.ravel(), rows):
        ranges = np.array([np.percentile(v[label], [0.5, 99.5]) for v in values if label in v])
        low, high = np.median(ranges, axis=0)  # the middle series' range: robust to one wild posterior
        low, high = low - 0.05 * (high - low), high + 0.05 * (high - low)
        bins = np.linspace(low, high, 50)
        outside = 0
        for k, ((name, _), v) in enumerate(zip(series, values)):
            if label not in v:
                continue
            inside = (v[label] >= low) & (v[label] <= high)
            outside = max(outside, int(np.sum(~inside)))
            if name == "reference":
                ax.hist(v[label][inside], bins=bins, density=True, histtype="step", color="0.2", lw=1.3,
                        label=name)
            else:
                ax.hist(v[label][inside], bins=bins, density=True, color=f"C{k}", alpha=0.45, label=name)
        if outside:
            ax.text(0.98, 0.95, f"{outside} draws outside", transform=ax.transAxes, ha="right", va="top",
                    fontsize=7, color="0.4")
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if len(series) > 1:
        fig.legend(handles, labels, loc="lower center", ncol=len(series), frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.04 if len(series) > 1 else 0, 1, 1))
    return save(fig, path)
