"""Plots written to PNG files; each function takes data and a path, returns the figure.

Matplotlib runs on its non-interactive ``Agg`` backend, so plots work on a
machine with no screen.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_history", "plot_intervals", "plot_marginals"]


def _save(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


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
    return _save(fig, path)


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


def plot_intervals(tree, var_names=None, path=None, reference: dict | None = None):
    """Forest plot: posterior median, 50% and 94% intervals of each variable.

    Parameters
    ----------
    tree : xarray.DataTree
        Posterior as returned by :meth:`Amortizer.sample`.
    var_names : list of str, optional
    path : str or Path, optional
    reference : dict of label → (mean, sd), optional
        Reference posterior summaries (e.g. NUTS) drawn as open markers.
    """
    rows = _flat_variables(tree, var_names)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(rows) + 1.2))
    for i, (label, values) in enumerate(rows):
        q = np.percentile(values, [3, 25, 50, 75, 97])
        y = len(rows) - 1 - i
        ax.plot([q[0], q[4]], [y, y], color="C0", lw=1.2)
        ax.plot([q[1], q[3]], [y, y], color="C0", lw=3.5)
        ax.plot(q[2], y, "o", color="white", mec="C0", ms=5)
        if reference and label in reference:
            mean, sd = reference[label]
            ax.errorbar(mean, y - 0.3, xerr=sd, fmt="s", color="C1", ms=4, lw=1,
                        label="reference mean ± sd" if i == 0 or "ref" not in ax.get_legend_handles_labels()[1] else None)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows][::-1])
    ax.set_title("Posterior medians, 50% and 94% intervals")
    ax.grid(axis="x", color="0.9")
    if reference:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles[:1], labels[:1], frameon=False, loc="best")
    return _save(fig, path)


def plot_marginals(tree, var_names=None, path=None, max_panels: int = 12):
    """Histogram of the marginal posterior of each (scalar) variable."""
    rows = _flat_variables(tree, var_names)[:max_panels]
    cols = min(4, len(rows))
    nrows = int(np.ceil(len(rows) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols, 2.4 * nrows), squeeze=False)
    for ax, (label, values) in zip(axes.ravel(), rows):
        ax.hist(values, bins=50, density=True, color="C0", alpha=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_yticks([])
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)
