"""Case study: hierarchical diffusion decision models on Wagenmakers et al. (2008), amortized vs NUTS.

The multilevel paper's Experiment 2 (:mod:`amortize.models.ddm`): models A
(shared bias) and B (subject-level bias), amortized over 10–30 subjects × 1–100
trials, fit to the accuracy condition's block 4 (17 subjects, 94–96 trials).
For each model: simulator and training throughput, the amortized posterior
against NUTS on the same program (with the Wiener density), the share of
draws whose non-decision time exceeds a subject's fastest response (zero
density), SBC and recovery on 200 simulations, leave-one-subject-out CV
without refits against timed NUTS refits; then elpd_diff(B − A). The
validation reports go to ``docs/figures/ddm_a`` and ``docs/figures/ddm_b``.

Prints a table and writes ``benchmarks/results/ddm.json``.

Usage: ``python benchmarks/ddm.py [--train-seconds 900] [--batch-size 32] [--refits 1]
[--sbc-datasets 200] [--logo-samples 20000] [--quick]``
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from _case_study import (am, comparison, comparison_rows, figure_folder, median_seconds, parse_arguments,
                         print_table, run_nuts, shared_data, simulations_per_second, steady_training, timed_logo,
                         write)
from amortize.diagnostics import elpd_difference
from amortize.models import ddm

#: Summaries pool extremes: the non-decision time lies below each subject's fastest response.
NETWORK = am.NetworkConfig(extremes=True)
NUTS_SETTINGS = {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}


def simulator_rates() -> dict:
    """Trials per second of the exact DDM sampler, and data sets per second of model A at 17 × 96."""
    n = 1_000_000
    params = [jnp.full((n,), x) for x in (0.5, 1.0, 0.35, 0.5)]
    draw = jax.jit(lambda key: ddm.DDM(*params).sample(key))
    trials = n / median_seconds(lambda: jax.block_until_ready(draw(jax.random.key(0))), 5)
    fixed = am.compile(ddm.model_a, data=["y"], sizes={"subject": (17, 17), "trial": (96, 96)})
    sets = simulations_per_second(fixed.graph, fixed.factorization, batch=64, repeats=5)
    return {"trials_per_second": trials, "data_sets_per_second_17x96": sets}


def ndt_above_fastest_response(tree, data) -> dict:
    """Share of draws with ndt_j >= subject j's fastest response time (they give the data zero density)."""
    fastest = np.array([y[:, 0].min() for y in data["y"]])
    ndt = tree["posterior"]["ndt"].values.reshape(-1, len(fastest))
    share = (ndt >= fastest).mean(axis=0)
    return {"overall": float(share.mean()), "worst_subject": float(share.max())}


def study(name: str, model, data, subjects, args) -> tuple[dict, object]:
    coords = {"subject": subjects}
    amortizer = am.compile(model, data=["y"], sizes=ddm.SIZES, network=NETWORK)
    start = time.perf_counter()
    history = amortizer.fit(time_limit=args.train_seconds, batch_size=args.batch_size, seed=0, progress=True)
    out = {"training": {"seconds": time.perf_counter() - start, "batch_size": args.batch_size,
                        "final_validation_loss": float(history["val_loss"][-1]),
                        **steady_training(history, args.batch_size)}}
    amortized = amortizer.sample(data, 4000, seed=1, coords=coords)
    out["amortized_seconds_per_data_set"] = median_seconds(lambda: amortizer.sample(data, 4000, seed=1, coords=coords, certify=False))
    out["amortized_ndt_above_fastest_response"] = ndt_above_fastest_response(amortized, data)

    reference, out["nuts"] = run_nuts(model, data, coords=coords, init_strategy=ddm.nuts_init(data), **NUTS_SETTINGS)
    out["nuts_ndt_above_fastest_response"] = ndt_above_fastest_response(reference, data)
    out["vs_nuts"], _ = comparison(amortized, reference)

    # A left-out subject's parameters come from their prior given the population draws, and 96
    # trials make that a weak proposal: more draws than the default 4000.
    elpd, out["logo"] = timed_logo(amortizer, data, num_samples=args.logo_samples, coords=coords)
    out["logo"]["elpd_i"] = [float(x) for x in np.asarray(elpd.elpd_i)]
    start = time.perf_counter()
    for j in range(args.refits):
        rest = {"y": [y for i, y in enumerate(data["y"]) if i != j]}
        run_nuts(model, rest, seed=j, init_strategy=ddm.nuts_init(rest), **NUTS_SETTINGS)
    out["nuts_refit_seconds"] = (time.perf_counter() - start) / args.refits
    out["nuts_refits_for_logo_seconds"] = out["nuts_refit_seconds"] * len(subjects)

    figures = figure_folder(f"ddm_{name.lower()}", args.quick)
    report = amortizer.validate(figures, data=data, coords=coords, reference=reference, logo=False,
                                num_datasets=args.sbc_datasets, sbc_draws=100, num_samples=4000)
    out["sbc"] = {k: bool(v) for k, v in report.calibration.sbc_table()["passed"].items()}
    out["recovery"] = report.calibration.recovery_table().drop(columns="level").to_dict(orient="index")
    out["figures"] = str(figures)
    return out, elpd


def main():
    args = parse_arguments(__doc__, steps=None, batch_size=32, refits=1,
                           quick={"train_seconds": 60.0, "refits": 1, "sbc_datasets": 20, "logo_samples": 2000},
                           extra=lambda p: (p.add_argument("--train-seconds", type=float, default=900.0),
                                            p.add_argument("--sbc-datasets", type=int, default=200),
                                            p.add_argument("--logo-samples", type=int, default=20000)))
    data, subjects = ddm.load(shared_data("wagenmakers2008_speed_acc"))
    results = {"data": {"subjects": len(subjects), "trials": [len(y) for y in data["y"]]},
               "sizes": ddm.SIZES, "network": NETWORK.to_dict(), "simulator": simulator_rates()}
    elpds = {}
    for name, model in (("A", ddm.model_a), ("B", ddm.model_b)):
        results[f"model_{name}"], elpds[name] = study(name, model, data, subjects, args)
    results["elpd_diff_B_minus_A"] = elpd_difference(elpds["B"], elpds["A"])
    path = write("ddm" if not args.quick else "ddm_quick", results)

    rows = [("simulator trials/s", f"{results['simulator']['trials_per_second']:,.0f}"),
            ("model A data sets/s (17 x 96)", f"{results['simulator']['data_sets_per_second_17x96']:,.0f}")]
    for name in ("A", "B"):
        r = results[f"model_{name}"]
        rows += [
            (f"[{name}] training", f"{r['training']['seconds']:.0f} s, {r['training']['train_steps']} steps "
                                   f"({r['training']['simulations_per_second_in_training']:.0f} data sets/s)"),
            (f"[{name}] amortized / NUTS per data set",
             f"{r['amortized_seconds_per_data_set']:.3f} s / {r['nuts']['seconds']:.0f} s"),
            (f"[{name}] ndt >= fastest rt (amortized, NUTS)",
             f"{r['amortized_ndt_above_fastest_response']['overall']:.3f}, "
             f"{r['nuts_ndt_above_fastest_response']['overall']:.3f}"),
            (f"[{name}] LOGO elpd (amortized)", f"{r['logo']['elpd']:.2f} ± {r['logo']['se']:.2f} "
                                                f"in {r['logo']['seconds']:.1f} s"),
            (f"[{name}] NUTS refits for LOGO", f"{r['nuts_refits_for_logo_seconds']:.0f} s "
                                              f"(from {args.refits} timed)"),
            (f"[{name}] SBC passed", ", ".join(k for k, v in r["sbc"].items() if v) or "none"),
            (f"[{name}] SBC failed", ", ".join(k for k, v in r["sbc"].items() if not v) or "none"),
        ]
        rows += comparison_rows(f"[{name}] amortized vs NUTS", r["vs_nuts"])
    d = results["elpd_diff_B_minus_A"]
    rows.append(("elpd_diff (B - A)", f"{d['elpd_diff']:.2f} ± {d['se']:.2f} (paper: 27.03 ± 1.73)"))
    print_table("hierarchical DDM case study", rows)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
