"""Gaussian HMM benchmark: filtering / smoothing accuracy against forward–backward, joint draws, latency.

Model: :mod:`amortize.models.gaussian_hmm` (the mixture paper's Gaussian HMM,
2–5 observations per unit), chains of 10–30 units.

Measures
--------
1. training for a wall-clock budget (``fit(time_limit=...)``, set-up and
   compilation included), and its throughput;
2. on 30 held-out simulated chains of 10–30 units, the mean absolute error of
   the learned filtering and smoothing marginals against exact
   forward–backward given each posterior draw's parameters;
3. the calibration of the smoothed marginals against the simulated states
   (accuracy, ECE);
4. latency of 1000 joint draws (parameters, the whole chain, filtered and
   smoothed marginals) for a 400-unit chain, with an amortizer compiled for
   chains up to 400 units;
5. the amortized parameters (alpha, mu) against their ``refine="psis"``
   posterior (the chain summed out by the forward algorithm, exact up to
   Monte Carlo error where the certificate is OK) on the first 10 chains.

Prints a table, writes ``benchmarks/results/hmm.json``.

``--quantiles N`` trains with quantile features in the summaries (issue 21:
do they help a hidden Markov chain as they help a mixture?) and writes
``hmm_quantiles<N>.json``.

Usage: ``python benchmarks/hmm.py [--train-seconds 240] [--quantiles N] [--quick]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _case_study import RESULTS, figure_folder, median_seconds, print_table, steady_training, write_to
from numpyro import handlers

import amortize as am
from amortize.diagnostics import check_classification
from amortize.models import gaussian_hmm as hmm

SIZES = {"unit": (10, 30)}
BATCH = 64


def simulated(seed, units):
    trace = handlers.trace(handlers.seed(hmm.model, seed)).get_trace(n_unit=units)
    return ({"y": np.asarray(trace["y"]["value"]), "count": np.asarray(trace["count"]["value"])},
            np.asarray(trace["z"]["value"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-seconds", type=float, default=240)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--quantiles", type=int, default=None,
                        help="NetworkConfig.quantiles (default: automatic, none for a hidden Markov chain); "
                             "writes hmm_quantiles<N>.json")
    args = parser.parse_args()
    if args.quick:
        args.train_seconds = 20
    network = am.NetworkConfig(summary_width=64, quantiles=args.quantiles)
    amortizer = am.compile(hmm.model, data=["y", "count"], sizes=SIZES, network=network)
    start = time.perf_counter()
    history = amortizer.fit(batch_size=BATCH, seed=0, time_limit=args.train_seconds, progress=False)
    fit_seconds = time.perf_counter() - start

    rng = np.random.default_rng(0)
    errors = {"filtered": [], "smoothed": []}
    smoothed_all, states_all = [], []
    parameters = {"mean_diff_sd": [], "sd_ratio": [], "certified": 0}
    draws = 200
    for i in range(5 if args.quick else 30):
        units = int(rng.integers(SIZES["unit"][0], SIZES["unit"][1] + 1))
        data, states = simulated(1000 + i, units)
        tree = amortizer.sample(data, num_samples=draws, seed=i)
        alpha = tree.posterior["alpha"].values.reshape(draws, 2, 2)
        mu = tree.posterior["mu"].values.reshape(draws, 2)
        filtered = tree.indicator_filtered_probabilities["z"].values.reshape(draws, units, 2)[..., 1]
        smoothed = tree.indicator_probabilities["z"].values.reshape(draws, units, 2)
        for s in range(0, draws, 10):
            exact_filtered, exact_smoothed, _ = hmm.forward_backward(data["y"], data["count"], alpha[s], mu[s])
            errors["filtered"].append(float(np.mean(np.abs(filtered[s] - exact_filtered[:, 1]))))
            errors["smoothed"].append(float(np.mean(np.abs(smoothed[s, :, 1] - exact_smoothed[:, 1]))))
        smoothed_all.append(smoothed.mean(0))
        if i < 10:   # the parameters against their psis-refined posterior (the chain summed out: exact when k̂ is OK)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", am.CertificateWarning)
                refined = amortizer.sample(data, num_samples=2000, seed=i, refine="psis")
            certified = am.certificate(refined).ok
            parameters["certified"] += int(certified)
            for name in ("alpha", "mu") if certified else ():
                exact = refined.posterior[name].values.reshape(2000, -1)
                amortized = tree.posterior[name].values.reshape(draws, -1)
                parameters["mean_diff_sd"].extend(np.abs(amortized.mean(0) - exact.mean(0)) / exact.std(0))
                parameters["sd_ratio"].extend(amortized.std(0) / exact.std(0))
        states_all.append(states)
    check = check_classification(np.concatenate(smoothed_all), np.concatenate(states_all), ["0", "1"])

    long_chain = am.compile(hmm.model, data=["y", "count"], sizes={"unit": (10, 400)}, network=network)
    long_chain.fit(steps=25, batch_size=8, seed=0, progress=False)
    data, _ = simulated(5, 400)
    latency = 1000 * median_seconds(lambda: long_chain.sample(data, num_samples=1000, seed=1, certify=False), 5)

    results = {"sizes": SIZES, "batch_size": BATCH, "train_seconds": args.train_seconds, "fit_seconds": fit_seconds,
               "steps": len(history["loss"]), "throughput": steady_training(history, BATCH),
               "filtered_mae": float(np.mean(errors["filtered"])), "smoothed_mae": float(np.mean(errors["smoothed"])),
               "smoothed_accuracy": check.accuracy, "smoothed_ece": check.ece.tolist(),
               "smoothed_ece_noise_floor": check.noise_floor.tolist(), "units_checked": check.n,
               "latency_1000_draws_400_units_ms": latency, "quantiles": args.quantiles,
               "final_val_loss": float(history["val_loss"][-1]) if len(history.get("val_loss", [])) else None,
               "parameters_vs_psis": {
                   "data_sets_certified": parameters["certified"],
                   "median_abs_mean_diff_sd": float(np.median(parameters["mean_diff_sd"])),
                   "max_abs_mean_diff_sd": float(np.max(parameters["mean_diff_sd"])),
                   "median_sd_ratio": float(np.median(parameters["sd_ratio"])),
                   "max_sd_ratio": float(np.max(parameters["sd_ratio"]))} if parameters["sd_ratio"] else None}
    print_table("Gaussian HMM", [
        ("training", f"{len(history['loss'])} steps in {fit_seconds:.0f} s "
                     f"({results['throughput']['simulations_per_second_in_training']:.0f} chains/s)"),
        ("filtering vs forward–backward", f"mean |Δp| {results['filtered_mae']:.4f}"),
        ("smoothing vs forward–backward", f"mean |Δp| {results['smoothed_mae']:.4f}"),
        ("smoothed marginals vs true states", f"accuracy {check.accuracy:.3f}, ECE {check.max_ece:.4f} "
                                              f"(floor {np.max(check.noise_floor):.4f}) on {check.n} units"),
        ("1000 joint draws, 400 units", f"{latency:.0f} ms (θ, chain, filtered and smoothed marginals)"),
        ("parameters vs psis (chain summed out)",
         "no certified data set" if results["parameters_vs_psis"] is None else
         "|Δmean| median {median_abs_mean_diff_sd:.3f} / max {max_abs_mean_diff_sd:.3f} sd, sd ratio median "
         "{median_sd_ratio:.2f} / max {max_sd_ratio:.2f} ({data_sets_certified} of 10 certified)".format(
             **results["parameters_vs_psis"])),
        ("final validation loss", f"{results['final_val_loss']}"),
    ])
    name = "hmm.json" if args.quantiles is None else f"hmm_quantiles{args.quantiles}.json"
    path = write_to(figure_folder("hmm", True) / name if args.quick else RESULTS / name, results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
