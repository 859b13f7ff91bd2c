"""Dutilh et al. speed–accuracy switching: the mixture paper's HMM-EAM, amortized and refined vs NUTS.

Model: :mod:`amortize.models.dutilh` (Kucharský & Bürkner 2025, case study
"hmm-eam"): per participant, 300–400 trials, a two-state hidden Markov chain
(guessing / controlled) with Wald and racing-Wald response times.

Measures, per participant (A–K, the first 400 trials; C has 333):

1. the amortized posterior (4000 draws) and its certificate, which sums the
   chain out by the forward algorithm (:mod:`amortize.refine.chains`);
2. ``refine="psis"``: the amortized draws of the parameters reweighted by
   p(θ, y) / q(θ | y), the chain then drawn from its exact conditional;
3. ``refine="nuts"``: NUTS on the parameters with the chain summed out,
   warm-started from the amortized draws, the chain then drawn exactly;
4. NUTS (4 chains × 1000 after 500 warm-up) on the same posterior with the
   chain summed out (:func:`amortize.models.dutilh.marginal_model`), and
   its smoothed state probabilities: exact forward–backward given each of
   400 NUTS draws, averaged;
5. per parameter (``alpha_2`` and ``nu_22`` derived), |Δmean| in NUTS sds and
   the sd ratio; the mean absolute error of the smoothed probability of the
   controlled state against NUTS's; the fraction of amortized ``tau`` draws
   above the fastest response (zero likelihood);
6. latency of 1000 draws of the parameters and the whole chain.

Then SBC of every parameter and the calibration of the smoothed state
probabilities on held-out simulations. A figure per participant goes to
``docs/figures/dutilh/``; prints a table, writes ``benchmarks/results/dutilh.json``.

Usage: ``python benchmarks/dutilh.py [--train-seconds 600] [--participants A B ...] [--quick]``
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from _case_study import RESULTS, figure_folder, median_seconds, print_table, shared_data, steady_training, write_to
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, init_to_median
from numpyro.diagnostics import split_gelman_rubin

import amortize as am
from amortize.diagnostics import calibrate, check_classification
from amortize.models import dutilh

BATCH = 32
#: Summaries pool extremes: the non-decision time lies below the fastest response, which a mean
#: and an sd do not carry.
NETWORK = am.NetworkConfig(summary_width=64, extremes=True)
NAMES = dutilh.PARAMETERS + ("alpha_2", "nu_22")
WARM = "refine='nuts'"


def nuts_reference(y, seed: int, warmup: int, samples: int, chains: int) -> tuple[dict, dict]:
    """NUTS draws ``{name: (chains, samples)}`` (derived included) and convergence stats."""
    start = time.perf_counter()
    mcmc = MCMC(NUTS(dutilh.marginal_model, init_strategy=init_to_median), num_warmup=warmup, num_samples=samples,
                num_chains=chains, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(seed), y=y, extra_fields=("diverging",))
    seconds = time.perf_counter() - start
    draws = dutilh.derived({k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()
                            if k in dutilh.PARAMETERS})
    rhat = max(float(split_gelman_rubin(draws[k])) for k in dutilh.PARAMETERS)
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return draws, {"seconds": seconds, "max_rhat": rhat, "divergences": divergences,
                   "converged": rhat <= 1.01 and divergences == 0}


def posterior_of(tree) -> dict:
    return dutilh.derived({k: tree.posterior[k].values.reshape(-1) for k in dutilh.PARAMETERS})


def compare(draws: dict, reference: dict) -> dict:
    """Per parameter: (mean − NUTS mean) / NUTS sd and sd / NUTS sd."""
    out = {}
    for name in NAMES:
        ref = np.asarray(reference[name]).reshape(-1)
        value = np.asarray(draws[name]).reshape(-1)
        out[name] = {"mean_in_sds": float((value.mean() - ref.mean()) / ref.std()),
                     "sd_ratio": float(value.std() / ref.std())}
    return out


def worst(comparison: dict) -> tuple[float, float]:
    return (max(abs(c["mean_in_sds"]) for c in comparison.values()),
            max(abs(np.log(c["sd_ratio"])) for c in comparison.values()))


def controlled_probability(tree, group: str = "indicator_probabilities") -> np.ndarray:
    """Mean over draws of q(z_t = controlled | ...): ``(T,)``."""
    values = tree[group]["z"].values
    return values.reshape((-1,) + values.shape[-2:])[..., 1].mean(0)


def figure(path, participant, y, pacc, smoothed: dict, filtered: dict, marginals: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = np.arange(1, len(y) + 1)
    fig = plt.figure(figsize=(12, 7.5), constrained_layout=True)
    grid = fig.add_gridspec(3, 5)
    ax = fig.add_subplot(grid[0, :])
    points = ax.scatter(trials, y[:, 0], c=smoothed["NUTS"], cmap="coolwarm", vmin=0, vmax=1, s=9,
                        marker="o", edgecolors="none")
    errors = y[:, 1] == 0
    ax.scatter(trials[errors], y[errors, 0], facecolors="none", edgecolors="k", s=14, linewidths=0.4,
               label="error response")
    ax.set_ylabel("response time (s)")
    ax.set_xlim(0, len(y) + 1)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    twin = ax.twinx()
    twin.step(trials, pacc, color="0.35", lw=0.9, where="mid")
    twin.set_ylabel("pay-off for accuracy (0–24)", color="0.35")
    fig.colorbar(points, ax=[ax, twin], label="P(controlled), NUTS smoothed", pad=0.01, aspect=15)
    ax.set_title(f"Participant {participant}: response times coloured by the smoothed probability of the "
                 f"controlled state")
    ax = fig.add_subplot(grid[1, :])
    styles = {"NUTS": dict(color="k", lw=1.6), "amortized": dict(color="tab:orange", lw=1.0),
              "psis": dict(color="tab:blue", lw=1.0, ls="--"), WARM: dict(color="tab:green", lw=1.0,
                                                                                    ls=":")}
    for label, values in smoothed.items():
        ax.plot(trials, values, label=f"smoothed, {label}", **styles[label])
    ax.plot(trials, filtered["NUTS"], color="0.6", lw=0.8, label="filtered, NUTS")
    ax.set_ylabel("P(controlled state)")
    ax.set_xlabel("trial")
    ax.set_xlim(0, len(y) + 1)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right", fontsize=8, ncol=4, frameon=False)
    for i, name in enumerate(("alpha_1", "alpha_2", "nu_1", "nu_21", "nu_22")):
        ax = fig.add_subplot(grid[2, i])
        reference = np.asarray(marginals["NUTS"][name]).reshape(-1)
        low, high = np.quantile(reference, [0.0005, 0.9995])
        pad = 0.6 * (high - low)
        bins = np.linspace(low - pad, high + pad, 50)
        for label, draws in marginals.items():
            ax.hist(np.clip(np.asarray(draws[name]).reshape(-1), bins[0], bins[-1]), bins=bins, density=True,
                    histtype="step", label=label, **{k: v for k, v in styles[label].items() if k != "ls"})
        ax.set_xlabel(name)
        ax.set_yticks([])
        if i == 0:
            ax.legend(fontsize=7, frameon=False)
            ax.set_ylabel("posterior density")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def simulated(seed: int, trials: int):
    trace = handlers.trace(handlers.seed(dutilh.model, seed)).get_trace(n_trial=trials)
    return {"y": np.asarray(trace["y"]["value"])}, np.asarray(trace["z"]["value"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-seconds", type=float, default=600)
    parser.add_argument("--participants", nargs="*", default=None)
    parser.add_argument("--sbc-datasets", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    args = parser.parse_args()
    warmup, samples, chains = 500, 1000, 4
    if args.quick:
        args.train_seconds, args.sbc_datasets = 30, 20
        args.participants = args.participants or ["A"]
        warmup, samples, chains = 200, 200, 2
    data = dutilh.load(shared_data("dutilh2010_speed_accuracy_switching"))
    participants = args.participants or sorted(data)
    figures = figure_folder("dutilh", args.quick)
    figures.mkdir(parents=True, exist_ok=True)

    amortizer = am.compile(dutilh.model, data=["y"], sizes=dutilh.SIZES, network=NETWORK)
    start = time.perf_counter()
    history = amortizer.fit(batch_size=BATCH, seed=0, time_limit=args.train_seconds, progress=False)
    fit_seconds = time.perf_counter() - start

    results = {"sizes": dutilh.SIZES, "batch_size": BATCH, "train_seconds": args.train_seconds,
               "fit_seconds": fit_seconds, "steps": len(history["loss"]),
               "throughput": steady_training(history, BATCH), "nuts_settings": [chains, warmup, samples],
               "participants": {}}
    rows = []
    for i, participant in enumerate(participants):
        y, pacc = data[participant]["y"], data[participant]["pacc"]
        observed = {"y": y}
        amortized = amortizer.sample(observed, num_samples=4000, seed=10 + i)
        certificate = am.certificate(amortized)
        start = time.perf_counter()
        refined = amortizer.sample(observed, num_samples=4000, seed=20 + i, refine="psis")
        psis_seconds = time.perf_counter() - start
        start = time.perf_counter()
        warm = amortizer.sample(observed, num_samples=4000, seed=30 + i, refine="nuts")
        warm_seconds = time.perf_counter() - start
        latency = median_seconds(lambda: amortizer.sample(observed, num_samples=1000, seed=1, certify=False), 5)
        reference, nuts_stats = nuts_reference(y, i, warmup, samples, chains)
        thinned = {k: np.asarray(v).reshape(-1)[:: max(1, chains * samples // 400)] for k, v in reference.items()}
        nuts_filtered, nuts_smoothed, _ = dutilh.state_probabilities(y, thinned)
        smoothed = {"NUTS": np.asarray(nuts_smoothed).mean(0), "amortized": controlled_probability(amortized),
                    "psis": controlled_probability(refined), WARM: controlled_probability(warm)}
        filtered = {"NUTS": np.asarray(nuts_filtered).mean(0)}
        marginals = {"NUTS": reference, "amortized": posterior_of(amortized), "psis": posterior_of(refined),
                     WARM: posterior_of(warm)}
        entry = {
            "trials": int(len(y)), "certificate": certificate.to_dict(),
            "psis_certificate": am.certificate(refined).to_dict(), "psis_seconds": psis_seconds,
            "latency_1000_draws_s": latency, "nuts": nuts_stats,
            "amortized": compare(marginals["amortized"], reference), "psis": compare(marginals["psis"], reference),
            "refine_nuts": compare(marginals[WARM], reference), "refine_nuts_seconds": warm_seconds,
            "refine_nuts_stats": {k: float(warm.posterior.attrs[k]) for k in ("max_rhat", "divergences", "converged",
                                                                                "num_warmup")},
            "smoothed_mae": {k: float(np.mean(np.abs(smoothed[k] - smoothed["NUTS"])))
                             for k in ("amortized", "psis", WARM)},
            "impossible_tau_fraction": dutilh.impossible_tau(marginals["amortized"]["tau"], y),
            "nuts_means": {k: float(np.mean(v)) for k, v in reference.items()},
        }
        results["participants"][participant] = entry
        figure(figures / f"participant_{participant}.png", participant, y, pacc, smoothed, filtered, marginals)
        a_mean, a_sd = worst(entry["amortized"])
        p_mean, p_sd = worst(entry["psis"])
        w_mean, w_sd = worst(entry["refine_nuts"])
        rows.append((f"{participant} ({len(y)} trials)",
                     f"amortized {a_mean:.2f} sd / {np.expm1(a_sd):.0%}, MAE {entry['smoothed_mae']['amortized']:.3f}"
                     f" | psis k̂ {certificate.khat:.2f}: {p_mean:.2f} sd / {np.expm1(p_sd):.0%}, "
                     f"MAE {entry['smoothed_mae']['psis']:.3f}, {psis_seconds:.1f} s"
                     f" | refine='nuts' {w_mean:.2f} sd / {np.expm1(w_sd):.0%}, "
                     f"MAE {entry['smoothed_mae'][WARM]:.3f}, "
                     f"{warm_seconds:.0f} s, R-hat {warm.posterior.attrs['max_rhat']:.3f}"
                     f" | NUTS {nuts_stats['seconds']:.0f} s"
                     f" R-hat {nuts_stats['max_rhat']:.3f}, {nuts_stats['divergences']} div"
                     f" | τ > min rt {entry['impossible_tau_fraction']:.1%}"))
        print(rows[-1][0], rows[-1][1], flush=True)

    calibration = calibrate(amortizer, num_datasets=args.sbc_datasets, num_samples=100, seed=3)
    results["sbc"] = {k: bool(v) for k, v in calibration.sbc_table()["passed"].items()}
    rng = np.random.default_rng(0)
    probabilities, states = [], []
    for j in range(5 if args.quick else 30):
        trials = int(rng.integers(dutilh.SIZES["trial"][0], dutilh.SIZES["trial"][1] + 1))
        sim, z = simulated(1000 + j, trials)
        tree = amortizer.sample(sim, num_samples=200, seed=j, certify=False)
        values = tree.indicator_probabilities["z"].values
        probabilities.append(values.reshape((-1,) + values.shape[-2:]).mean(0))
        states.append(z)
    check = check_classification(np.concatenate(probabilities), np.concatenate(states), ["guessing", "controlled"])
    results["indicators"] = {"accuracy": check.accuracy, "ece": check.ece.tolist(),
                             "noise_floor": check.noise_floor.tolist(), "trials": check.n}
    rows += [("training", f"{results['steps']} steps × {BATCH} in {fit_seconds:.0f} s "
                          f"({results['throughput']['simulations_per_second_in_training']:.0f} data sets/s)"),
             ("SBC passed", ", ".join(k for k, v in results["sbc"].items() if v) or "none"),
             ("SBC failed", ", ".join(k for k, v in results["sbc"].items() if not v) or "none"),
             ("smoothed states vs simulated", f"accuracy {check.accuracy:.3f}, ECE {check.max_ece:.4f} "
                                             f"(floor {np.max(check.noise_floor):.4f}) on {check.n} trials")]
    print_table("Dutilh HMM-EAM: worst parameter |Δmean| in NUTS sds / sd off, smoothed-state MAE", rows)
    path = write_to(figures / "dutilh.json" if args.quick else RESULTS / "dutilh.json", results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
