"""Core benchmark: simulation and training throughput, posterior latency, recovery.

Model: the two-level Gaussian with unknown mu, tau, sigma
(:mod:`amortize.models.hierarchical_normal`), 2–50 groups of 1–30 observations.

Measures
--------
1. simulated data sets per second (the program under jit + vmap, at 50 × 30);
2. training steps per second (batch 64), in the steady state of that run;
3. latency of 1000 posterior draws for 50 groups × 20 observations: median of
   20 calls after warm-up, for the jitted draws alone, ``Amortizer.draws``
   (NumPy arrays) and ``Amortizer.sample`` (ArviZ DataTree);
4. recovery after a time-budgeted training run (``fit(time_limit=300)``, the
   whole call: set-up, compilation and training): on 200 held-out simulations, the correlation of posterior means with the truth and
   the uniformity of the ranks of the truth among posterior draws (SBC; for
   the group effects, of one randomly chosen group per data set, since the
   ranks of one data set's groups are not independent).

Prints a table and writes ``benchmarks/results/core.json``.

Usage: ``python benchmarks/core.py [--train-seconds 300] [--flow spline|affine]
[--flow-hidden 64] [--flow-depth 1] [--fast] [--local-flow-depth N]
[--learning-rate 1e-3] [--out results.json] [--quick]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import jax
import numpy as np

from _case_study import (RESULTS, draw_latencies_ms, print_table, simulations_per_second, steady_training,
                         write_to)

import amortize as am
from amortize.models import hierarchical_normal
from amortize.simulate import simulate, unpack_factor


def simulation_rate():
    fixed = am.compile(hierarchical_normal.model, data=["y"], sizes={"group": (50, 50), "obs": (30, 30)})
    return simulations_per_second(fixed.graph, fixed.factorization)


def uniformity(ranks, n_draws):
    """Chi-square test of rank uniformity (10 bins) and the largest ECDF deviation."""
    from scipy import stats

    bins = np.linspace(0, n_draws + 1, 11)
    counts, _ = np.histogram(ranks, bins=bins)
    chi2 = stats.chisquare(counts)
    ecdf_dev = np.max(np.abs(np.sort(ranks) / (n_draws + 1) - (np.arange(len(ranks)) + 0.5) / len(ranks)))
    return float(chi2.pvalue), float(ecdf_dev), counts.tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-seconds", type=float, default=300.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--flow", default="spline", choices=["spline", "affine"])
    parser.add_argument("--flow-hidden", type=int, default=am.NetworkConfig.flow_hidden)
    parser.add_argument("--flow-depth", type=int, default=am.NetworkConfig.flow_depth)
    parser.add_argument("--fast", action="store_true", help="NetworkConfig.fast(): lean affine local flows")
    parser.add_argument("--local-flow-depth", type=int, default=None, help="override the local flows' depth")
    parser.add_argument("--learning-rate", type=float, default=am.TrainConfig.learning_rate)
    parser.add_argument("--holdout", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--out", default=str(RESULTS / "core.json"))
    args = parser.parse_args()
    if args.quick:
        args.train_seconds, args.holdout = 60.0, 20

    network = am.NetworkConfig(flow=args.flow, flow_hidden=args.flow_hidden, flow_depth=args.flow_depth)
    if args.fast:
        network = am.NetworkConfig.fast(flow=args.flow, flow_hidden=args.flow_hidden, flow_depth=args.flow_depth)
    if args.local_flow_depth is not None:
        network = dataclasses.replace(network, local_flow_depth=args.local_flow_depth)
    amortizer = am.compile(hierarchical_normal.model, data=["y"], sizes=hierarchical_normal.SIZES, network=network)
    results = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "jax_devices": jax.local_device_count(),
               "backend": jax.default_backend(), "network": network.to_dict(), "batch_size": args.batch_size,
               "learning_rate": args.learning_rate}

    results["simulated_data_sets_per_second_50x30"] = simulation_rate()

    # The budget covers the whole fit (initialization, compilation, validation):
    # the time a user waits. The learning rate decays over the time left after
    # compilation, so the run ends at its final learning rate.
    start = time.perf_counter()
    history = amortizer.fit(time_limit=args.train_seconds, batch_size=args.batch_size, seed=2, progress=True,
                            config=am.TrainConfig(learning_rate=args.learning_rate))
    train_seconds = time.perf_counter() - start
    results.update(steady_training(history, args.batch_size), train_seconds=train_seconds,
                   final_validation_loss=float(history["val_loss"][-1]))
    steps = results["train_steps"]

    y = np.random.default_rng(0).normal(size=(50, 20))
    for name, ms in draw_latencies_ms(amortizer, {"y": y}).items():
        results[f"latency_ms_1000_draws_50x20_{name}"] = ms

    # Recovery on held-out simulations at random sizes within the trained range.
    holdout = jax.device_get(simulate(jax.random.key(12345), amortizer.graph, amortizer.factorization, args.holdout))
    n_draws = 199
    # theta: every group pooled (correlation, and a rank histogram for
    # diagnosis), and one group drawn per data set for the uniformity test.
    # Pooled ranks of one data set's groups share its global draws and are
    # not independent, so a chi-square test over all ~5,000 of them rejects
    # far too often; one group per data set gives 200 independent ranks,
    # each uniform under a calibrated posterior.
    truth = {"mu": [], "tau": [], "sigma": [], "theta": [], "theta_one_group": []}
    pick = np.random.default_rng(7)
    means = {k: [] for k in truth}
    ranks = {k: [] for k in truth}
    factors = {f.name: f for f in amortizer.factorization}
    for i in range(args.holdout):
        if not holdout.valid[i]:
            continue
        group_mask = holdout.masks["group"][i]
        obs_mask = holdout.masks["obs"][i][group_mask]
        values = holdout.data["y"][i][group_mask][..., 0]
        groups = [values[j][obs_mask[j]] for j in range(len(values))]
        true_global = unpack_factor(holdout.latents["global"][i], factors["global"], amortizer.graph)
        true_theta = unpack_factor(holdout.latents["group"][i][group_mask], factors["group"], amortizer.graph)["theta"]
        draws, _ = amortizer.draws({"y": groups}, n_draws, seed=i)
        for name in ("mu", "tau", "sigma"):
            t = float(true_global[name])
            truth[name].append(t)
            means[name].append(float(draws[name].mean()))
            ranks[name].append(int(np.sum(draws[name] < t)))
        t = np.asarray(true_theta)
        truth["theta"].extend(t.tolist())
        means["theta"].extend(draws["theta"].mean(0).tolist())
        group_ranks = np.sum(draws["theta"] < t, axis=0)
        ranks["theta"].extend(group_ranks.tolist())
        j = pick.integers(len(t))
        truth["theta_one_group"].append(float(t[j]))
        means["theta_one_group"].append(float(draws["theta"][:, j].mean()))
        ranks["theta_one_group"].append(int(group_ranks[j]))
    recovery = {}
    for name in truth:
        p_value, ecdf_dev, counts = uniformity(np.asarray(ranks[name]), n_draws)
        recovery[name] = {"correlation": float(np.corrcoef(truth[name], means[name])[0, 1]),
                          "rank_chi2_p": p_value, "rank_ecdf_max_deviation": ecdf_dev,
                          "rank_histogram_10_bins": counts, "n": len(truth[name])}
    results["recovery"] = recovery
    results["holdout_data_sets"] = len(truth["mu"])

    label = "fast preset" if args.fast else f"flow={args.flow}"
    title = f"amortize core benchmark ({results['backend']}, {label}, batch {args.batch_size})"
    rows = [
        ("simulated data sets / s (50 × 30)", f"{results['simulated_data_sets_per_second_50x30']:,.0f}"),
        ("set-up + compilation + first chunk (s)", f"{results['seconds_before_first_validation']:.1f}"),
        ("training steps / s", f"{results['train_steps_per_second']:.2f}"),
        ("simulations / s in training", f"{results['simulations_per_second_in_training']:,.0f}"),
        ("training time incl. compilation (s), steps", f"{train_seconds:.0f}, {steps}"),
        ("1000 draws, 50 × 20: jitted (ms)", f"{results['latency_ms_1000_draws_50x20_jitted']:.1f}"),
        ("1000 draws, 50 × 20: draws() (ms)", f"{results['latency_ms_1000_draws_50x20_draws']:.1f}"),
        ("1000 draws, 50 × 20: sample() (ms)", f"{results['latency_ms_1000_draws_50x20_sample_datatree']:.1f}"),
    ]
    for name, r in recovery.items():
        rows.append((f"recovery {name}: corr / rank p / ECDF dev",
                     f"{r['correlation']:.3f} / {r['rank_chi2_p']:.2f} / {r['rank_ecdf_max_deviation']:.3f}"))
    print_table(title, rows)
    print(f"\nwrote {write_to(args.out, results)}")


if __name__ == "__main__":
    main()
