"""Model-comparison benchmark: exactness of PMPs, calibration, transfer learning, latency.

Models (:mod:`amortize.models.hierarchical_comparison`):

* nested pair with closed-form marginal likelihoods, pooled vs hierarchical
  (tau = 0.5, sigma = 1), on 2–20 groups of 1–20 observations;
* non-nested pair without closed form: two-level models with normal vs
  Student-t(3) noise, same sizes.

Measures
--------
1. From scratch, for several wall-clock budgets (the whole ``fit`` call, set-up
   and compilation included): on held-out simulations of every size in range,
   the mean absolute error of the learned PMP against the exact one, the ECE
   per model (with its noise floor: the ECE exact PMPs score on the same data
   sets) and the accuracy (exact PMPs' accuracy beside it).
2. Transfer learning (Elsemüller et al.): pre-train on 2–10 groups of 1–10
   observations, then fine-tune on the full range (:meth:`with_sizes`) for
   several budgets. Reported: the smallest budget reaching MAE <= 0.05 and
   ECE <= 0.02, from scratch and with transfer.
3. Latency: one ``predict`` call (16 groups × 15 observations; preparation of
   the data included), and per data set within ``predict_many`` of 1000;
   training throughput (simulated data sets per second).
4. Non-nested pair: accuracy, ECE, calibration and confusion plots.

Prints a table, writes ``benchmarks/results/comparison.json`` and the plots
in ``docs/figures/comparison/``.

Usage: ``python benchmarks/comparison.py [--quick]``
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np
from _case_study import RESULTS, figure_folder, median_seconds, print_table, steady_training, write_to

import amortize as am
from amortize.diagnostics import check_classification, plot_calibration, plot_confusion
from amortize.diagnostics._matplotlib import plt, save
from amortize.models import hierarchical_comparison as hc

SMALL = {"group": (2, 10), "obs": (1, 10)}
BATCH = 128
TARGET_MAE, TARGET_ECE = 0.05, 0.02


def nested():
    return am.compare({"pooled": hc.pooled, "hierarchical": hc.hierarchical}, data=["y"], sizes=hc.SIZES)


def evaluate(comparison, held_out, exact):
    learned = comparison.probabilities(held_out.data, held_out.masks)
    valid = np.asarray(held_out.valid)
    check = check_classification(learned[valid], held_out.model_index[valid], comparison.names)
    return check, {
        "mae": float(np.mean(np.abs(learned[valid, 1] - exact[valid, 1]))),
        "p95_abs_error": float(np.percentile(np.abs(learned[valid, 1] - exact[valid, 1]), 95)),
        "max_ece": check.max_ece, "ece_noise_floor": float(np.max(check.noise_floor)),
        "accuracy": check.accuracy, "log_score": check.log_score,
    }


def timed_fit(comparison, seconds, seed=0):
    start = time.perf_counter()
    history = comparison.fit(batch_size=BATCH, seed=seed, time_limit=seconds, progress=False)
    return history, time.perf_counter() - start


def first_meeting(rows):
    for row in rows:
        if row["mae"] <= TARGET_MAE and row["max_ece"] <= TARGET_ECE:
            return row["budget_seconds"]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    args = parser.parse_args()
    scratch_budgets = [8] if args.quick else [30, 60, 120, 240]
    pretrain_seconds = 8 if args.quick else 60
    finetune_budgets = [8] if args.quick else [15, 30, 60, 120]
    nonnested_seconds = 8 if args.quick else 240
    held_out_size = 2000 if args.quick else 10000
    figures = figure_folder("comparison", args.quick)

    reference = nested()
    held_out = reference.simulate(held_out_size, seed=2024)
    exact = hc.exact_model_probabilities(held_out.data["y"][..., 0], held_out.masks["obs"])
    exact_check = check_classification(exact, held_out.model_index, reference.names)
    results = {"machine": platform.processor() or platform.machine(), "jax_backend": jax.default_backend(),
               "sizes": hc.SIZES, "pretrain_sizes": SMALL, "batch_size": BATCH, "held_out": held_out_size,
               "exact": {"accuracy": exact_check.accuracy, "max_ece": exact_check.max_ece,
                         "log_score": exact_check.log_score}}

    scratch = []
    for budget in scratch_budgets:
        comparison = nested()
        history, seconds = timed_fit(comparison, budget)
        check, row = evaluate(comparison, held_out, exact)
        scratch.append({"budget_seconds": budget, "fit_seconds": seconds, "steps": len(history["loss"]), **row})
        print(f"scratch {budget:>4} s: {scratch[-1]}", flush=True)
    results["scratch"] = scratch
    plot_calibration(check, figures / "nested_calibration.png")
    plot_confusion(check, figures / "nested_confusion.png")
    results["throughput"] = steady_training(history, BATCH)

    small = am.compare({"pooled": hc.pooled, "hierarchical": hc.hierarchical}, data=["y"], sizes=SMALL)
    _, pretrain_fit = timed_fit(small, pretrain_seconds)
    transfer = []
    for budget in finetune_budgets:
        comparison = small.with_sizes(hc.SIZES)
        history, seconds = timed_fit(comparison, budget, seed=1)
        _, row = evaluate(comparison, held_out, exact)
        transfer.append({"budget_seconds": budget, "fit_seconds": seconds, "steps": len(history["loss"]), **row})
        print(f"fine-tune {budget:>4} s: {transfer[-1]}", flush=True)
    scratch_needed, transfer_needed = first_meeting(scratch), first_meeting(transfer)
    results["transfer"] = {"pretrain_seconds": pretrain_seconds, "pretrain_fit_seconds": pretrain_fit,
                           "finetune": transfer, "scratch_budget_meeting_targets": scratch_needed,
                           "finetune_budget_meeting_targets": transfer_needed}

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([r["budget_seconds"] for r in scratch], [r["mae"] for r in scratch], "o-", label="from scratch")
    ax.plot([r["budget_seconds"] for r in transfer], [r["mae"] for r in transfer], "s-",
            label=f"fine-tuned after {pretrain_seconds} s on 2–10 × 1–10")
    ax.axhline(TARGET_MAE, color="0.5", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training budget on 2–20 groups × 1–20 obs (s)")
    ax.set_ylabel("mean |learned − exact PMP|")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, figures / "transfer.png")

    # Latency, on the last scratch-trained comparison.
    comparison = nested()
    timed_fit(comparison, scratch_budgets[0])
    rng = np.random.default_rng(0)
    one = {"y": rng.normal(size=(16, 15))}
    many = [{"y": rng.normal(size=(int(rng.integers(2, 21)), int(rng.integers(1, 21))))} for _ in range(1000)]
    many_seconds = median_seconds(lambda: comparison.predict_many(many), 3)  # s per 1000 = ms per data set
    results["latency_ms"] = {"predict_16x15": 1000 * median_seconds(lambda: comparison.predict(one), 200),
                             "per_dataset_in_predict_many_1000": many_seconds}

    nonnested = am.compare({"normal": hc.normal_noise, "student_t": hc.student_t_noise}, data=["y"],
                           sizes=hc.SIZES)
    history, seconds = timed_fit(nonnested, nonnested_seconds)
    check = nonnested.validate(held_out_size, seed=99, path=figures / "nonnested")
    results["nonnested"] = {"budget_seconds": nonnested_seconds, "steps": len(history["loss"]),
                            "accuracy": check.accuracy, "ece": dict(zip(check.names, check.ece.tolist())),
                            "ece_noise_floor": dict(zip(check.names, check.noise_floor.tolist())),
                            "confusion": check.confusion.tolist()}

    rows = [("exact PMPs", f"accuracy {exact_check.accuracy:.3f}, max ECE {exact_check.max_ece:.4f} "
                           f"(noise floor of {held_out_size} data sets)")]
    rows += [(f"scratch {r['budget_seconds']} s ({r['steps']} steps)",
              f"MAE {r['mae']:.4f}, p95 {r['p95_abs_error']:.3f}, max ECE {r['max_ece']:.4f}, "
              f"accuracy {r['accuracy']:.3f}") for r in scratch]
    rows += [(f"fine-tune {r['budget_seconds']} s ({r['steps']} steps)",
              f"MAE {r['mae']:.4f}, p95 {r['p95_abs_error']:.3f}, max ECE {r['max_ece']:.4f}, "
              f"accuracy {r['accuracy']:.3f}") for r in transfer]
    rows += [("budget to MAE<=0.05 & ECE<=0.02", f"scratch {scratch_needed} s; fine-tune {transfer_needed} s "
                                                 f"after {pretrain_seconds} s pre-training"),
             ("training throughput", f"{results['throughput']['simulations_per_second_in_training']:.0f} "
                                     f"data sets/s ({results['throughput']['train_steps_per_second']:.1f} steps/s)"),
             ("latency predict (16 × 15)", f"{results['latency_ms']['predict_16x15']:.2f} ms"),
             ("latency in predict_many", f"{results['latency_ms']['per_dataset_in_predict_many_1000']:.3f} ms "
                                         f"per data set"),
             ("non-nested normal vs t(3)", f"accuracy {check.accuracy:.3f}, ECE "
                                           + ", ".join(f"{n} {e:.4f}" for n, e in zip(check.names, check.ece)))]
    print_table("Amortized model comparison", rows)
    path = write_to(figures / "comparison.json" if args.quick else RESULTS / "comparison.json", results)
    print(f"\nwrote {path} and {figures}/")


if __name__ == "__main__":
    main()
