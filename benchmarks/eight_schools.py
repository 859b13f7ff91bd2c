"""Case study: eight schools, amortized vs posteriordb's reference draws and NUTS.

Trains :mod:`amortize.models.eight_schools` (mu ~ N(0, 5), tau ~ HalfCauchy(5),
4–16 schools with standard errors drawn from Uniform(5, 20) during training),
then on the published data:

* compares the amortized posterior with posteriordb's reference draws
  (non-centered Stan, 10,000 draws) and with NUTS on the same (centered)
  program, which typically reports divergences: the comparison flags that;
* times one amortized posterior against one NUTS run, and leave-one-school-out
  CV (all 8 folds, no refit) against 8 NUTS refits;
* writes the validation report (SBC, recovery, PPC, pooling, LOGO, comparison
  with the reference draws) to ``docs/figures/eight_schools/``.

Usage: ``python benchmarks/eight_schools.py [--steps 10000] [--batch-size 128] [--quick]``
"""

from __future__ import annotations

import time

import numpy as np

from _case_study import (am, comparison, comparison_rows, figure_folder, median_seconds, parse_arguments,
                         print_table, run_nuts, shared_data, standard_rows, timed_logo, train, write)
from amortize.models import eight_schools as es


def main():
    args = parse_arguments(__doc__, steps=10000, batch_size=128, quick={"steps": 200, "batch_size": 32})
    folder = shared_data("eight_schools")
    data, coords = es.data(), {"school": es.SCHOOLS}
    posteriordb = es.reference_posterior(folder)

    amortizer = am.compile(es.model, data=["y", "sigma"], sizes=es.SIZES)
    results = {"training": train(amortizer, args.steps, args.batch_size)}
    amortized = amortizer.sample(data, 4000, seed=1, coords=coords)
    results["amortized_seconds_per_data_set"] = median_seconds(
        lambda: amortizer.sample(data, 4000, seed=1, coords=coords, certify=False))

    nuts_tree, results["nuts"] = run_nuts(es.model, data, coords=coords, num_warmup=1000, num_samples=1000,
                                          num_chains=4, target_accept_prob=0.95)
    results["vs_posteriordb"], _ = comparison(amortized, posteriordb)
    results["nuts_vs_posteriordb"], _ = comparison(nuts_tree, posteriordb)
    results["vs_nuts"], _ = comparison(amortized, nuts_tree)

    _, results["logo"] = timed_logo(amortizer, data, coords=coords)
    start = time.perf_counter()
    for j in range(len(es.Y)):
        keep = np.arange(len(es.Y)) != j
        run_nuts(es.model, {"y": es.Y[keep], "sigma": es.SIGMA[keep]}, num_warmup=1000, num_samples=1000,
                 num_chains=4, target_accept_prob=0.95, seed=j)
    results["nuts_refits_for_logo_seconds"] = time.perf_counter() - start

    figures = figure_folder("eight_schools", args.quick)
    report = amortizer.validate(figures, data=data, coords=coords, reference=posteriordb,
                                logo=True, num_datasets=200, sbc_draws=100, num_samples=4000)
    results["sbc"] = {k: bool(v) for k, v in report.calibration.sbc_table()["passed"].items()}
    results["recovery"] = report.calibration.recovery_table().drop(columns="level").to_dict(orient="index")
    path = write("eight_schools" if not args.quick else "eight_schools_quick", results)

    rows = standard_rows(results, args.steps, args.batch_size, len(es.Y), "all timed")
    rows += comparison_rows("amortized vs posteriordb", results["vs_posteriordb"])
    rows += comparison_rows("NUTS (centered) vs posteriordb", results["nuts_vs_posteriordb"])
    print_table("eight schools case study", rows)
    print(f"\nwrote {path} and {figures}")


if __name__ == "__main__":
    main()
