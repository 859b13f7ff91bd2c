"""Case study: the air-traffic AR(1) panel, validated by SBC and against NUTS on simulated panels.

Trains :mod:`amortize.models.air_traffic` (the multilevel paper's eqs. 20–21,
2–30 countries × 5–20 years, the years an ordered level) with a wall-clock
budget, then

1. writes the validation report to ``docs/figures/air_traffic/``: SBC and
   recovery of the 10 hyper-parameters and the 5 kinds of country parameters
   on held-out simulations, and, on one simulated panel of 16 countries × 15
   years (the shape of the paper's Eurostat panel), the comparison with NUTS
   on the same program, pooling factors against NUTS and the one-step-ahead
   predictive of every country;
2. repeats the NUTS comparison on ``--panels`` simulated 16 × 15 panels and
   collects the pooling factors of all their countries, amortized vs NUTS
   (``pooling_panels.png``).

The Eurostat panel is not reachable here; every panel is drawn from the
program's prior with a fixed seed. Prints a table and writes
``benchmarks/results/air_traffic.json``.

Usage: ``python benchmarks/air_traffic.py [--train-seconds 900] [--panels 20] [--default-networks]
[--name air_traffic] [--quick]``
"""

from __future__ import annotations

import time

import numpy as np
from numpyro import handlers

from _case_study import (am, comparison, comparison_rows, figure_folder, median_seconds, parse_arguments,
                         print_table, run_nuts, steady_training, write)
from amortize.diagnostics import plot_pooling, pooling_factors
from amortize.models import air_traffic

DATA = ("u", "w", "y")
COUNTRIES, YEARS = 16, 15
NUTS_SETTINGS = {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4, "target_accept_prob": 0.9,
                 "reparam": "noncentered"}  # the centered program has a funnel in every sigma_*


def simulated_panel(seed: int) -> tuple[dict, dict]:
    """One 16 × 15 panel from the program's prior: (true latents, data in plate order (country, year))."""
    trace = handlers.trace(handlers.seed(air_traffic.model, seed)).get_trace(n_country=COUNTRIES, n_time=YEARS)
    truth = {n: np.asarray(trace[n]["value"]) for n in air_traffic.HYPER + air_traffic.LOCAL}
    return truth, {n: np.asarray(trace[n]["value"]).T for n in DATA}  # the program's data are time-major


def extra_options(parser):
    parser.add_argument("--train-seconds", type=float, default=900.0)
    parser.add_argument("--panels", type=int, default=20, help="simulated panels compared with NUTS")
    parser.add_argument("--sbc-datasets", type=int, default=200)
    parser.add_argument("--default-networks", action="store_true",
                        help="NetworkConfig() instead of NetworkConfig.fast()")
    parser.add_argument("--name", default="air_traffic",
                        help="results/<name>.json and docs/figures/<name>/ (keep runs of other settings apart)")


def main():
    args = parse_arguments(__doc__, steps=None, batch_size=64, extra=extra_options,
                           quick={"train_seconds": 60.0, "panels": 2, "sbc_datasets": 20})
    network = am.NetworkConfig() if args.default_networks else am.NetworkConfig.fast()
    nuts_settings = NUTS_SETTINGS if not args.quick else {**NUTS_SETTINGS, "num_warmup": 200, "num_samples": 200}
    amortizer = am.compile(air_traffic.model, data=list(DATA), sizes=air_traffic.SIZES, network=network)
    start = time.perf_counter()
    history = amortizer.fit(time_limit=args.train_seconds, batch_size=args.batch_size, seed=0, progress=True)
    results = {"network": network.to_dict(), "nuts_settings": nuts_settings,
               "training": {"seconds": time.perf_counter() - start, "batch_size": args.batch_size,
                            "final_validation_loss": float(history["val_loss"][-1]),
                            **steady_training(history, args.batch_size)}}

    # 1. The validation report on panel 0, with NUTS as the reference.
    _, panel = simulated_panel(0)
    nuts_tree, results["nuts"] = run_nuts(air_traffic.model, panel, **nuts_settings)
    figures = figure_folder(args.name, args.quick)
    report = amortizer.validate(figures, data=panel, reference=nuts_tree, num_datasets=args.sbc_datasets,
                                sbc_draws=100, num_samples=4000)
    sbc = report.calibration.sbc_table()
    results["sbc"] = {k: {"passed": bool(r["passed"]), "level": r["level"], "tested": int(r["tested"]),
                          "max_ecdf_deviation": float(r["max_ecdf_deviation"])} for k, r in sbc.iterrows()}
    results["recovery"] = report.calibration.recovery_table().drop(columns="level").to_dict(orient="index")
    results["latency_ms_4000_draws_16x15"] = 1000 * median_seconds(lambda: amortizer.sample(panel, 4000, seed=1, certify=False))

    # 2. NUTS on many panels: posterior agreement and pooling factors.
    per_panel, pooled = [], {n: {"amortized": [], "reference": [], "labels": []} for n in air_traffic.LOCAL}
    for seed in range(args.panels):
        _, panel = simulated_panel(seed)
        reference, nuts_run = (nuts_tree, results["nuts"]) if seed == 0 else run_nuts(
            air_traffic.model, panel, seed=seed, **nuts_settings)
        amortized = amortizer.sample(panel, 4000, seed=seed)
        summary, _ = comparison(amortized, reference)
        per_panel.append({"seed": seed, "nuts": nuts_run, "vs_nuts": summary})
        ours, theirs = pooling_factors(amortized, air_traffic.model), pooling_factors(reference, air_traffic.model)
        for name in air_traffic.LOCAL:
            pooled[name]["amortized"] += np.asarray(ours[name]).tolist()
            pooled[name]["reference"] += np.asarray(theirs[name]).tolist()
            pooled[name]["labels"] += [f"{seed}:{j}" for j in range(COUNTRIES)]
        print(f"panel {seed}: NUTS {nuts_run['seconds']:.0f} s, converged {nuts_run['converged']}, "
              f"all sites within 0.1 sd / 10%: {all(s['within_tolerance'] for s in summary.values())}")
    results["panels"] = per_panel
    results["vs_nuts"] = per_panel[0]["vs_nuts"]
    results["pooling_panels"] = {name: _agreement(d) for name, d in pooled.items()}
    plot_pooling(pooled, figures / "pooling_panels.png")
    results["panel_summary"] = _panel_summary(per_panel)
    path = write(args.name if not args.quick else f"{args.name}_quick", results)

    training = results["training"]
    rows = [("training: seconds, steps × batch, steps / s",
             f"{training['seconds']:.0f}, {training['train_steps']} × {args.batch_size}, "
             f"{training['train_steps_per_second']:.2f}"),
            ("amortized posterior, 4000 draws, 16 × 15 (ms)", f"{results['latency_ms_4000_draws_16x15']:.0f}"),
            ("NUTS, 4 × 1000 draws, panel 0 (s)", f"{results['nuts']['seconds']:.0f}"),
            ("SBC failed (of 15)", ", ".join(k for k, v in results["sbc"].items() if not v["passed"]) or "none")]
    rows += comparison_rows("panel 0, amortized vs NUTS", results["vs_nuts"])
    s = results["panel_summary"]
    rows += [(f"{args.panels} panels: NUTS converged", f"{s['nuts_converged']}"),
             (f"{args.panels} panels: all sites within 0.1 sd / 10% (converged NUTS only)",
              f"{s['panels_within_tolerance']} of {s['nuts_converged']}"),
             ("median over panels of worst |Δmean| (sd), worst |sd ratio − 1|",
              f"{s['median_worst_mean_diff_sd']:.3f}, {s['median_worst_sd_ratio_minus_1']:.3f}")]
    rows += [(f"pooling {name}: corr, mean |Δλ|", f"{d['correlation']:.3f}, {d['mean_abs_difference']:.3f}")
             for name, d in results["pooling_panels"].items()]
    print_table("air-traffic AR(1) case study", rows)
    print(f"\nwrote {path} and {figures}")


def _agreement(d: dict) -> dict:
    a, r = np.asarray(d["amortized"]), np.asarray(d["reference"])
    return {"countries": int(a.size), "correlation": float(np.corrcoef(a, r)[0, 1]),
            "mean_abs_difference": float(np.mean(np.abs(a - r))),
            "amortized_mean": float(a.mean()), "nuts_mean": float(r.mean())}


def _panel_summary(per_panel: list[dict]) -> dict:
    converged = [p for p in per_panel if p["nuts"]["converged"]]
    worst_mean = [max(s["max_abs_mean_diff_sd"] for s in p["vs_nuts"].values()) for p in converged]
    worst_sd = [max(s["max_abs_sd_ratio_minus_1"] for s in p["vs_nuts"].values()) for p in converged]
    return {"panels": len(per_panel), "nuts_converged": len(converged),
            "panels_within_tolerance": sum(all(s["within_tolerance"] for s in p["vs_nuts"].values())
                                           for p in converged),
            "median_worst_mean_diff_sd": float(np.median(worst_mean)) if converged else float("nan"),
            "median_worst_sd_ratio_minus_1": float(np.median(worst_sd)) if converged else float("nan"),
            "sites_within_tolerance": {site: sum(p["vs_nuts"][site]["within_tolerance"] for p in converged)
                                       for site in (per_panel[0]["vs_nuts"] if per_panel else {})}}


if __name__ == "__main__":
    main()
