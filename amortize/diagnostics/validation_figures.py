"""Validation figures: each has a data function (JSON-able dict) and a plot function.

The data function computes what the figure shows; the plot function draws
that dict and writes a PNG. :func:`amortize.diagnostics.validate` writes both,
so every number behind a figure is on disk next to it. Plots of posteriors
themselves (intervals, marginals, training history) are in
:mod:`amortize.diagnostics.posterior_plots`.
"""

from __future__ import annotations

import numpy as np

from amortize.diagnostics._matplotlib import plt, save

__all__ = [
    "sbc_figure_data", "plot_sbc",
    "recovery_figure_data", "plot_recovery",
    "ppc_figure_data", "plot_ppc",
    "series_figure_data", "plot_series",
    "pooling_figure_data", "plot_pooling",
    "comparison_figure_data", "plot_comparison",
    "logo_figure_data", "plot_logo",
]


def _grid(n: int, cols: int = 4, size=(3.0, 2.4)):
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def _list(x):
    return np.asarray(x, float).round(6).tolist()


# --- SBC ---------------------------------------------------------------------------------

def sbc_figure_data(calibration, prob: float = 0.95) -> dict:
    """Per parameter: ECDF of the tested PIT values minus uniform, and the simultaneous band."""
    out = {}
    for name in calibration.parameters:
        test = calibration.sbc_test(name, prob)
        x = test["x"]
        out[name] = {"x": _list(x), "ecdf_minus_uniform": _list(test["ecdf"] - x),
                     "lower": _list(test["lower"] - x), "upper": _list(test["upper"] - x),
                     "passed": bool(test["inside"]), "prob": prob}
    return out


def plot_sbc(data, path=None):
    """ECDF-difference plots of SBC ranks with simultaneous bands (Säilynoja et al. 2022).

    ``data``: :func:`sbc_figure_data` output, or a :class:`Calibration`.
    """
    if not isinstance(data, dict):
        data = sbc_figure_data(data)
    fig, axes = _grid(len(data))
    for ax, (name, d) in zip(axes, data.items()):
        color = "C0" if d["passed"] else "C3"
        ax.fill_between(d["x"], d["lower"], d["upper"], color="0.85", step="post",
                        label=f"{int(100 * d['prob'])}% simultaneous band")
        ax.step(d["x"], d["ecdf_minus_uniform"], where="post", color=color, lw=1.2)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_title(f"{name} ({'pass' if d['passed'] else 'FAIL'})", fontsize=9, color=color)
        ax.set_xlabel("fractional rank", fontsize=8)
    axes[0].set_ylabel("ECDF − uniform", fontsize=8)
    fig.suptitle("Simulation-based calibration", y=1.0)
    fig.tight_layout()
    return save(fig, path)


# --- Recovery -----------------------------------------------------------------------------

def recovery_figure_data(calibration, max_points: int = 300, seed: int = 0) -> dict:
    """Per parameter: truths, posterior means and 90% intervals (a random subset of units)."""
    rng = np.random.default_rng(seed)
    table = calibration.recovery_table()
    out = {}
    for name, p in calibration.parameters.items():
        n = len(p["truth"])
        keep = np.sort(rng.choice(n, min(n, max_points), replace=False))
        row = table.loc[name]
        out[name] = {"truth": _list(p["truth"][keep]), "mean": _list(p["mean"][keep]),
                     "lower": _list(p["lower"][keep]), "upper": _list(p["upper"][keep]),
                     "correlation": float(row["correlation"]), "contraction": float(row["contraction"]),
                     "z_mean": float(row["z_mean"]), "z_sd": float(row["z_sd"])}
    return out


def plot_recovery(data, path=None):
    """Posterior mean (with 90% interval) against the true value, per parameter."""
    if not isinstance(data, dict):
        data = recovery_figure_data(data)
    fig, axes = _grid(len(data))
    for ax, (name, d) in zip(axes, data.items()):
        truth, mean = np.asarray(d["truth"]), np.asarray(d["mean"])
        err = np.abs(np.stack([mean - np.asarray(d["lower"]), np.asarray(d["upper"]) - mean]))
        ax.errorbar(truth, mean, yerr=err, fmt="o", ms=2, color="C0", ecolor="C0", alpha=0.35, lw=0.6)
        low, high = float(min(truth.min(), mean.min())), float(max(truth.max(), mean.max()))
        ax.plot([low, high], [low, high], color="0.4", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.text(0.03, 0.97, f"r = {d['correlation']:.2f}\ncontraction = {d['contraction']:.2f}\n"
                f"z: {d['z_mean']:+.2f} ± {d['z_sd']:.2f}", transform=ax.transAxes, va="top", fontsize=7)
        ax.set_xlabel("true value", fontsize=8)
    axes[0].set_ylabel("posterior mean (90% interval)", fontsize=8)
    fig.suptitle("Parameter recovery", y=1.0)
    fig.tight_layout()
    return save(fig, path)


# --- Posterior predictive ------------------------------------------------------------------

def ppc_figure_data(tree, model, num_replicates: int = 50, seed: int = 0) -> dict:
    """Per response site: observed values, ``num_replicates`` replicated data sets, and
    the replicated distribution of the mean and sd with their predictive p-values.

    ``tree`` must have a ``posterior_predictive`` group
    (:func:`amortize.diagnostics.posterior_predictive`).
    """
    from amortize.diagnostics.predictive import predictive_summary

    rng = np.random.default_rng(seed)
    summary = predictive_summary(tree, model)
    out = {}
    for name, s in summary.items():
        observed = np.asarray(tree["observed_data"][name].values).ravel()
        replicated = np.asarray(tree["posterior_predictive"][name].values).reshape(-1, observed.size)
        rows = rng.choice(replicated.shape[0], min(num_replicates, replicated.shape[0]), replace=False)
        out[name] = {"observed": _list(observed), "replicated": [_list(r) for r in replicated[rows]],
                     "observed_mean": s["observed_mean"], "observed_sd": s["observed_sd"],
                     "replicated_mean": _list(s["replicated_mean"]), "replicated_sd": _list(s["replicated_sd"]),
                     "p_mean": s["p_mean"], "p_sd": s["p_sd"]}
    return out


def plot_ppc(data, path=None):
    """Observed data vs replicated data sets (densities), and the mean / sd checks."""
    fig, axes = plt.subplots(len(data), 3, figsize=(10, 2.8 * len(data)), squeeze=False)
    for row, (name, d) in zip(axes, data.items()):
        observed = np.asarray(d["observed"])
        low, high = np.percentile(np.concatenate([observed] + [np.asarray(r) for r in d["replicated"]]), [0.5, 99.5])
        bins = np.linspace(low, high, 40)
        for i, replicate in enumerate(d["replicated"]):
            row[0].hist(replicate, bins=bins, density=True, histtype="step", color="C0", alpha=0.15,
                        label="replicated" if i == 0 else None)
        row[0].hist(observed, bins=bins, density=True, histtype="step", color="k", lw=1.6, label="observed")
        row[0].set_title(f"{name}: observed vs replicated", fontsize=9)
        row[0].legend(frameon=False, fontsize=7)
        for ax, stat in zip(row[1:], ("mean", "sd")):
            ax.hist(d[f"replicated_{stat}"], bins=40, color="C0", alpha=0.7)
            ax.axvline(d[f"observed_{stat}"], color="k", lw=1.6)
            ax.set_title(f"{name}: {stat} (p = {d[f'p_{stat}']:.2f})", fontsize=9)
            ax.set_yticks([])
    fig.suptitle("Posterior predictive checks", y=1.0)
    fig.tight_layout()
    return save(fig, path)


def series_figure_data(tree, model, max_panels: int = 16) -> dict:
    """Per response site of an ordered level and per series (e.g. per country): the
    observed values step by step, and the median and central 50% / 90% intervals of
    the predictive draws in ``tree["posterior_predictive"]``.

    With the one-step-ahead predictive
    (``posterior_predictive(tree, model, one_step=True)``) each step's interval is
    p(y_t | y_{t-1} observed, covariates, posterior), so the observed value
    should fall inside the 90% band about 90% of the time; ``coverage_50`` and
    ``coverage_90`` give the fractions over every observation (all series, not
    only the plotted ones). At most ``max_panels`` series are kept.

    Raises
    ------
    AmortizeError
        The program has no ordered level, or ``tree`` has no ``posterior_predictive``.
    """
    from amortize.convert import parent_coordinate
    from amortize.diagnostics.predictive import graph_of
    from amortize.errors import AmortizeError
    from amortize.padded_program import response_names

    graph = graph_of(model, tree)
    level = graph.ordered_level
    if level is None:
        raise AmortizeError("Series predictive plots need an ordered level (a `scan` over `n_<level>` steps); "
                            "this program has none. Use ppc_figure_data for exchangeable data.")
    if "posterior_predictive" not in tree.children:
        raise AmortizeError("The tree has no posterior_predictive group: run "
                            "amortize.diagnostics.posterior_predictive(tree, model, one_step=True) first.")
    predictive = tree["posterior_predictive"]
    coordinate = parent_coordinate(level.parent, level.name) if level.parent else None
    out = {"kind": str(predictive.attrs.get("kind", "replicated")), "level": level.name,
           "series_of": level.parent or "", "sites": {}}
    for name in response_names(graph):
        if graph.sites[name].level != level.name:
            continue
        observed = tree["observed_data"][name]
        values = np.asarray(observed.values)
        draws = np.asarray(predictive[name].values).reshape((-1,) + values.shape)
        quantiles = np.percentile(draws, [5, 25, 50, 75, 95], axis=0)
        owners = np.asarray(observed[coordinate].values) if coordinate in observed.coords else np.zeros(len(values))
        labels = list(dict.fromkeys(owners.tolist()))
        panels = []
        for label in labels[:max_panels]:
            where = owners == label
            panels.append({"label": str(label), "observed": _list(values[where]),
                           **{key: _list(q[where]) for key, q in zip(("q05", "q25", "q50", "q75", "q95"), quantiles)}})
        out["sites"][name] = {
            "coverage_50": float(np.mean((values >= quantiles[1]) & (values <= quantiles[3]))),
            "coverage_90": float(np.mean((values >= quantiles[0]) & (values <= quantiles[4]))),
            "series": len(labels), "panels": panels}
    return out


def plot_series(data, path=None):
    """Observed series (black) against the predictive median and 50% / 90% bands, one panel per series."""
    panels = [(name, p) for name, d in data["sites"].items() for p in d["panels"]]
    fig, axes = _grid(len(panels), cols=4, size=(3.0, 2.2))
    for ax, (name, p) in zip(axes, panels):
        steps = np.arange(len(p["observed"]))
        ax.fill_between(steps, p["q05"], p["q95"], color="C0", alpha=0.18, lw=0, label="90%")
        ax.fill_between(steps, p["q25"], p["q75"], color="C0", alpha=0.35, lw=0, label="50%")
        ax.plot(steps, p["q50"], color="C0", lw=1.0, label="median")
        ax.plot(steps, p["observed"], "o-", color="k", ms=2.5, lw=0.8, label="observed")
        ax.set_title(f"{name}: {data['series_of']} {p['label']}".rstrip(), fontsize=8)
        ax.tick_params(labelsize=7)
    if panels:
        axes[0].legend(frameon=False, fontsize=6)
    kind = "one-step-ahead" if data["kind"] == "one-step-ahead" else "replicated"
    coverage = ", ".join(f"{n}: {d['coverage_90']:.0%} in 90% band" for n, d in data["sites"].items())
    fig.suptitle(f"{kind} posterior predictive along `{data['level']}` ({coverage})", y=1.0, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


# --- Pooling --------------------------------------------------------------------------------

def pooling_figure_data(pooling, reference=None) -> dict:
    """Per local site and component: pooling factors per instance (and the reference's)."""
    out = {}
    for name, da in pooling.data_vars.items():
        plate = da.dims[0]
        values = np.asarray(da.values).reshape(da.shape[0], -1)
        ref = None if reference is None or name not in reference else np.asarray(reference[name].values).reshape(da.shape[0], -1)
        for c in range(values.shape[1]):
            key = name if values.shape[1] == 1 else f"{name}[{c}]"
            out[key] = {"labels": [str(v) for v in da[plate].values] if plate in da.coords else list(range(da.shape[0])),
                        "amortized": _list(values[:, c])}
            if ref is not None:
                out[key]["reference"] = _list(ref[:, c])
    return out


def plot_pooling(data, path=None):
    """Pooling factor per instance (0: no pooling, 1: complete); against the reference if given."""
    fig, axes = _grid(len(data), cols=3, size=(3.6, 3.0))
    for ax, (name, d) in zip(axes, data.items()):
        amortized = np.asarray(d["amortized"])
        if "reference" in d:
            reference = np.asarray(d["reference"])
            ax.scatter(reference, amortized, s=10, color="C0")
            ax.plot([0, 1], [0, 1], color="0.4", lw=0.8, ls="--")
            ax.set_xlabel("reference (NUTS)", fontsize=8)
            ax.set_ylabel("amortized", fontsize=8)
        else:
            ax.plot(np.arange(len(amortized)), amortized, "o", ms=3, color="C0")
            ax.set_xlabel("instance", fontsize=8)
            ax.set_ylabel("pooling factor", fontsize=8)
        ax.set_ylim(-0.02, max(1.02, float(amortized.max()) + 0.02))
        ax.set_title(f"pooling: {name}", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


# --- Comparison with a reference --------------------------------------------------------------

def comparison_figure_data(amortized, reference, table, max_panels: int = 12, bins: int = 40) -> dict:
    """Histograms of the amortized and reference marginals for the worst-matching parameters."""
    from amortize.convert import scalar_draws

    rng = np.random.default_rng(0)
    order = table["mean_diff_sd"].abs().sort_values(ascending=False).index[:max_panels]
    out = {}
    sites = {p: table.loc[p, "site"] for p in order}
    cache = {}
    for parameter in order:
        site = sites[parameter]
        if site not in cache:
            a_scalars = scalar_draws(amortized["posterior"], site, 4000, rng)
            r_scalars = scalar_draws(reference["posterior"], site, 4000, rng)
            cache[site] = {key: (a, r) for (key, a), (_, r) in zip(a_scalars, r_scalars)}
        a, r = cache[site][parameter]
        edges = np.histogram_bin_edges(np.concatenate([a, r]), bins=bins)
        out[parameter] = {"edges": _list(edges),
                          "amortized": _list(np.histogram(a, edges, density=True)[0]),
                          "reference": _list(np.histogram(r, edges, density=True)[0]),
                          "mean_diff_sd": float(table.loc[parameter, "mean_diff_sd"]),
                          "sd_ratio": float(table.loc[parameter, "sd_ratio"])}
    return out


def plot_comparison(data, path=None, reference_label: str = "NUTS"):
    """Marginal posterior densities, amortized vs reference, one panel per parameter."""
    fig, axes = _grid(len(data))
    for ax, (name, d) in zip(axes, data.items()):
        edges = np.asarray(d["edges"])
        ax.stairs(d["reference"], edges, color="k", lw=1.4, label=reference_label)
        ax.stairs(d["amortized"], edges, color="C0", lw=1.2, label="amortized")
        ax.set_title(f"{name}\nΔmean {d['mean_diff_sd']:+.2f} sd, sd ratio {d['sd_ratio']:.2f}", fontsize=8)
        ax.set_yticks([])
    axes[0].legend(frameon=False, fontsize=7)
    fig.suptitle(f"Amortized vs {reference_label} marginals", y=1.0)
    fig.tight_layout()
    return save(fig, path)


# --- LOGO -------------------------------------------------------------------------------------

def logo_figure_data(elpd) -> dict:
    """Pointwise leave-one-group-out ELPD per group."""
    da = elpd.elpd_i
    return {"labels": [str(v) for v in da[da.dims[0]].values], "elpd_i": _list(da.values),
            "elpd": float(elpd.elpd), "se": float(elpd.se), "p": float(elpd.p), "plate": da.dims[0]}


def plot_logo(data, path=None):
    """Pointwise leave-one-group-out ELPD, one point per group."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.18 * len(data["labels"]) + 2), 3.2))
    ax.plot(np.arange(len(data["elpd_i"])), data["elpd_i"], "o", ms=4, color="C0")
    if len(data["labels"]) <= 30:
        ax.set_xticks(range(len(data["labels"])), data["labels"], rotation=90, fontsize=7)
    ax.set_xlabel(data["plate"])
    ax.set_ylabel("elpd (left-out group)")
    ax.set_title(f"Leave-one-{data['plate']}-out: elpd = {data['elpd']:.1f} ± {data['se']:.1f}")
    fig.tight_layout()
    return save(fig, path)
