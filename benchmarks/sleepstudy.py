"""Case study: sleepstudy, correlated varying intercepts and slopes (LKJ), amortized vs NUTS.

Trains :mod:`amortize.models.sleepstudy` on 5–30 subjects × 5–10 days, then on
lme4's data (18 subjects × 10 days): compares the amortized posterior with NUTS
on the same program, times both, times leave-one-subject-out CV (no refit)
against NUTS refits, and writes the validation report to
``docs/figures/sleepstudy/``.

Usage: ``python benchmarks/sleepstudy.py [--steps 10000] [--batch-size 64] [--quick]``
"""

from __future__ import annotations

import time

from _case_study import (am, comparison, comparison_rows, figure_folder, median_seconds, parse_arguments,
                         print_table, run_nuts, shared_data, simulated_twin, standard_rows, timed_logo, train,
                         write)
from amortize.models import sleepstudy


def main():
    args = parse_arguments(__doc__, steps=10000, batch_size=64, refits=3,
                           quick={"steps": 200, "batch_size": 32, "refits": 1})
    data, coords = sleepstudy.load(shared_data("sleepstudy"))
    n_subjects = data["reaction"].shape[0]

    amortizer = am.compile(sleepstudy.model, data=["days", "reaction"], sizes=sleepstudy.SIZES)
    results = {"training": train(amortizer, args.steps, args.batch_size)}
    amortized = amortizer.sample(data, 4000, seed=1, coords=coords)
    results["amortized_seconds_per_data_set"] = median_seconds(
        lambda: amortizer.sample(data, 4000, seed=1, coords=coords, certify=False))
    nuts_tree, results["nuts"] = run_nuts(sleepstudy.model, data, coords=coords, num_warmup=1000,
                                          num_samples=1000, num_chains=4)
    results["vs_nuts"], table = comparison(amortized, nuts_tree)
    # The same comparison on data the program itself generated (same design):
    # where the real data leave the model's assumptions, NUTS and the amortizer
    # may rightly disagree; here they must not.
    twin = simulated_twin(nuts_tree, sleepstudy.model, data)
    twin_nuts, results["twin_nuts"] = run_nuts(sleepstudy.model, twin, coords=coords, num_warmup=1000,
                                               num_samples=1000, num_chains=4, seed=1)
    results["twin_vs_nuts"], _ = comparison(amortizer.sample(twin, 4000, seed=2, coords=coords), twin_nuts)

    _, results["logo"] = timed_logo(amortizer, data, coords=coords)
    start = time.perf_counter()
    for j in range(args.refits):
        rest = {k: [row for i, row in enumerate(v) if i != j] for k, v in data.items()}
        run_nuts(sleepstudy.model, rest, num_warmup=1000, num_samples=1000, num_chains=4, seed=j)
    per_refit = (time.perf_counter() - start) / args.refits
    results["nuts_refit_seconds"] = per_refit
    results["nuts_refits_for_logo_seconds"] = per_refit * n_subjects

    figures = figure_folder("sleepstudy", args.quick)
    report = amortizer.validate(figures, data=data, coords=coords, reference=nuts_tree,
                                logo=False, num_datasets=200, sbc_draws=100, num_samples=4000)
    results["sbc"] = {k: bool(v) for k, v in report.calibration.sbc_table()["passed"].items()}
    results["recovery"] = report.calibration.recovery_table().drop(columns="level").to_dict(orient="index")
    path = write("sleepstudy" if not args.quick else "sleepstudy_quick", results)

    rows = standard_rows(results, args.steps, args.batch_size, n_subjects, f"from {args.refits} timed")
    rows += comparison_rows("amortized vs NUTS", results["vs_nuts"])
    rows += comparison_rows("simulated twin, amortized vs NUTS", results["twin_vs_nuts"])
    print_table("sleepstudy case study", rows)
    print(f"\nwrote {path} and {figures}")


if __name__ == "__main__":
    main()
