"""Old Faithful case study: two- and three-component Gaussian mixtures with explicit indicators.

For K = 2 and 3 (:mod:`amortize.models.old_faithful`, on standardized data):

1. trains the amortizer for a wall-clock budget (``fit(time_limit=...)``: set-up
   and compilation included) over 100–300 eruptions;
2. samples the posterior of the 272 real eruptions (4000 draws: the weights,
   means and sds, and every eruption's indicator with its class probabilities)
   and times 1000 draws;
3. runs NUTS on the same mixture with the indicators summed out
   (``marginal_model_for``) and compares the continuous parameters (mean
   difference in NUTS sds, sd ratio, interval overlap, MMD);
4. checks the indicators on held-out simulations (accuracy, ECE,
   reliability curve: :func:`amortize.diagnostics.check_indicators`);
5. plots the eruptions coloured by their posterior probability of each
   component, and the marginal posteriors against NUTS.

Writes ``benchmarks/results/old_faithful.json`` (a run of some components
keeps the stored results of the others) and figures in
``docs/figures/old_faithful/``.

``--quantiles N`` and ``--summary set_transformer`` choose the summary
(:class:`amortize.NetworkConfig`; without ``--quantiles`` the library's
default, 16 quantiles at the indicators' level); a run with either writes
``old_faithful[_set_transformer][_quantilesN].json`` and its figures under
``docs/figures/old_faithful[_set_transformer][_quantilesN]/`` instead.
``--focus`` trains on the data's own design (272 eruptions) with the
self-consistency term on the data, the indicators summed out of its joint
part (:mod:`amortize.refine.consistency`); its outputs get ``_focus``.
``old_faithful.json`` itself was measured before quantile features existed.

Usage: ``python benchmarks/old_faithful.py [--train-seconds 600] [--components 2 3] [--quantiles 16]
[--summary deepset] [--focus] [--save DIR] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _case_study import (RESULTS, comparison, draw_latencies_ms, figure_folder, print_table, run_nuts, shared_data,
                         write_to)

import amortize as am
from amortize.diagnostics import check_indicators, plot_calibration, plot_comparison
from amortize.diagnostics.validation_figures import comparison_figure_data
from amortize.diagnostics._matplotlib import plt, save
from amortize.models import old_faithful


def plot_assignments(y, scale, probabilities, path, title):
    """Eruptions in minutes, each coloured by its posterior probabilities of the components."""
    minutes = y * scale["sd"] + scale["mean"]
    k = probabilities.shape[1]
    colours = np.array(plt.get_cmap("tab10").colors[:k])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    rgb = np.clip(probabilities @ colours, 0.0, 1.0)  # float32 sums of probabilities may pass 1 by rounding
    axes[0].scatter(minutes[:, 0], minutes[:, 1], c=rgb, s=14, edgecolor="none")
    axes[0].set_xlabel("eruption duration (min)")
    axes[0].set_ylabel("waiting time (min)")
    axes[0].set_title(title, fontsize=9)
    uncertainty = 1 - probabilities.max(1)
    axes[1].hist(uncertainty, bins=30, color="0.4")
    axes[1].set_xlabel("1 − max_k p(z_i = k | y)")
    axes[1].set_ylabel("eruptions")
    axes[1].set_title("indicator uncertainty", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-seconds", type=float, default=600)
    parser.add_argument("--components", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--quantiles", type=int, default=None, help="NetworkConfig.quantiles (default: automatic)")
    parser.add_argument("--summary", default="deepset", choices=("deepset", "set_transformer"))
    parser.add_argument("--focus", action="store_true",
                        help="design-focused training with the self-consistency term on the data (docs/design.md)")
    parser.add_argument("--save", default=None, help="folder to save each trained amortizer in (k2, k3)")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    args = parser.parse_args()
    if args.quick:
        args.train_seconds = 15
    network = am.NetworkConfig(summary=args.summary, quantiles=args.quantiles)
    variant = ("" if args.summary == "deepset" else f"_{args.summary}") + (
        "" if args.quantiles is None else f"_quantiles{args.quantiles}") + ("_focus" if args.focus else "")
    figures = figure_folder("old_faithful" + variant, args.quick)
    y, scale = old_faithful.load(shared_data("old_faithful"))
    results = {"train_seconds": args.train_seconds, "sizes": old_faithful.SIZES, "n": int(len(y)),
               "summary": args.summary, "quantiles": args.quantiles, "focus": args.focus}
    rows = []
    for k in args.components:
        amortizer = am.compile(old_faithful.model_for(k), data=["y"], sizes=old_faithful.SIZES, network=network)
        focus = {}
        if args.focus:   # the 272 eruptions' own design; the indicators summed out of the term's joint part
            focus = {"design": amortizer.design_of({"y": y}),
                     "self_consistency": am.SelfConsistency(data={"y": y}, simulations=False, draws=16,
                                                            local_draws=8)}
        start = time.perf_counter()
        history = amortizer.fit(batch_size=64, seed=0, time_limit=args.train_seconds, **focus)
        fit_seconds = time.perf_counter() - start
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            amortizer.save(Path(args.save) / f"k{k}")
        tree = amortizer.sample({"y": y}, num_samples=4000, seed=1)
        latency = draw_latencies_ms(amortizer, {"y": y}, 1000, repeats=3 if args.quick else 10)
        reference, nuts_info = run_nuts(old_faithful.marginal_model_for(k), {"y": y}, seed=0,
                                        num_warmup=200 if args.quick else 1000,
                                        num_samples=200 if args.quick else 1000)
        nuts_seconds = nuts_info["seconds"]
        summary, table = comparison(tree, reference)
        print(f"K={k} vs NUTS:", {site: (round(v["max_abs_mean_diff_sd"], 3), round(v["max_abs_sd_ratio_minus_1"], 3))
                                  for site, v in summary.items()}, flush=True)
        checks = check_indicators(amortizer, num_datasets=20 if args.quick else 200, num_samples=200, seed=3)
        check = checks["z"]
        probabilities = tree.indicator_probabilities["z"].mean(("chain", "draw")).values
        plot_assignments(y, scale, probabilities, figures / f"k{k}_assignments.png",
                         f"{k} components: colour = posterior class probabilities")
        plot_calibration(check, figures / f"k{k}_indicator_calibration.png")
        plot_comparison(comparison_figure_data(tree, reference, table), path=figures / f"k{k}_marginals.png")
        results[f"k{k}"] = {
            "train_seconds": args.train_seconds, "steps": len(history["loss"]), "fit_seconds": fit_seconds,
            "final_val_loss": float(history["val_loss"][-1]),
            "nuts": nuts_info, "draw_latency_ms": latency, "comparison": summary,
            "indicator_check": {"accuracy": check.accuracy, "ece": check.ece.tolist(),
                                "ece_noise_floor": check.noise_floor.tolist(), "n": check.n},
            "posterior_means": {name: tree.posterior[name].mean(("chain", "draw")).values.tolist()
                                for name in ("weights", "mu_duration", "mu_waiting")},
            "nuts_means": {name: reference.posterior[name].mean(("chain", "draw")).values.tolist()
                           for name in ("weights", "mu_duration", "mu_waiting")},
        }
        worst = max(v["max_abs_mean_diff_sd"] for v in summary.values())
        worst_sd = max(v["max_abs_sd_ratio_minus_1"] for v in summary.values())
        rows += [(f"K={k}: training", f"{len(history['loss'])} steps in {fit_seconds:.0f} s"),
                 (f"K={k}: vs NUTS", f"worst |Δmean| {worst:.2f} NUTS sd, worst |sd ratio − 1| {worst_sd:.2f}"),
                 (f"K={k}: indicators", f"accuracy {check.accuracy:.3f}, max ECE {check.max_ece:.4f} "
                                        f"(floor {np.max(check.noise_floor):.4f}) on {check.n} simulated eruptions"),
                 (f"K={k}: 1000 draws", f"{latency['draws']:.1f} ms (θ and 272 indicators); NUTS {nuts_seconds:.0f} s")]
    print_table("Old Faithful mixtures", rows)
    name = f"old_faithful{variant}.json"
    path = figures / name if args.quick else RESULTS / name
    if path.exists():   # a run of some components keeps the stored results of the others
        stored = json.loads(path.read_text())
        results = {**{k: v for k, v in stored.items() if k.startswith("k") and k not in results}, **results}
    path = write_to(path, results)
    print(f"\nwrote {path} and {figures}/")


if __name__ == "__main__":
    main()
