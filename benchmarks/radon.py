"""Case study: radon in Minnesota, varying intercepts and varying intercepts + floor slopes.

For each of the two programs in :mod:`amortize.models.radon` (85 counties of 1
to 116 houses, long-format data with a county index), trains an amortizer,
compares its posterior of the Minnesota data with NUTS on the same program,
and times both. Leave-one-county-out CV runs for both amortizers (85 folds, no
refit) and their ``elpd_diff ± se`` is reported; the cost of LOGO by NUTS is
estimated from a few timed refits. The validation report of each model goes
to ``docs/figures/radon_<model>/``.

Usage: ``python benchmarks/radon.py [--steps 2000] [--batch-size 16] [--summary-width 32] [--quick]``
"""

from __future__ import annotations

import time

from _case_study import (am, comparison, comparison_rows, figure_folder, median_seconds, parse_arguments,
                         print_table, run_nuts, shared_data, standard_rows, timed_logo, train, write)
from amortize.diagnostics import elpd_difference
from amortize.models import radon

MODELS = {"intercepts": radon.intercepts, "intercepts_slopes": radon.intercepts_slopes}


def main():
    def extra(parser):
        parser.add_argument("--summary-width", type=int, default=32,
                            help="the house-level summary sees up to 90 × 120 padded houses per data set")
        parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))

    args = parse_arguments(__doc__, steps=2000, batch_size=16, refits=2, extra=extra,
                           quick={"steps": 50, "batch_size": 8, "refits": 1})
    data, index = radon.load(shared_data("radon"))
    counties = sorted(set(index["county"]))
    results, elpds = {}, {}
    for name in args.models:
        model = MODELS[name]
        amortizer = am.compile(model, data=["floor", "log_radon"], sizes=radon.SIZES,
                               network=am.NetworkConfig(summary_width=args.summary_width))
        out = {"training": train(amortizer, args.steps, args.batch_size)}
        amortized = amortizer.sample(data, 4000, seed=1, index=index)
        out["amortized_seconds_per_data_set"] = median_seconds(
            lambda: amortizer.sample(data, 4000, seed=1, index=index, certify=False))
        nuts_tree, out["nuts"] = run_nuts(model, data, index=index, num_warmup=1000, num_samples=1000,
                                          num_chains=4)
        out["vs_nuts"], _ = comparison(amortized, nuts_tree)
        elpds[name], out["logo"] = timed_logo(amortizer, data, index=index)
        start = time.perf_counter()
        for j in range(args.refits):
            keep = index["county"] != counties[j]
            run_nuts(model, {k: v[keep] for k, v in data.items()}, index={"county": index["county"][keep]},
                     num_warmup=1000, num_samples=1000, num_chains=4, seed=j)
        out["nuts_refit_seconds"] = (time.perf_counter() - start) / args.refits
        out["nuts_refits_for_logo_seconds"] = out["nuts_refit_seconds"] * len(counties)
        report = amortizer.validate(figure_folder(f"radon_{name}", args.quick), data=data, index=index,
                                    reference=nuts_tree, num_datasets=200, sbc_draws=100, num_samples=4000)
        out["sbc"] = {k: bool(v) for k, v in report.calibration.sbc_table()["passed"].items()}
        out["recovery"] = report.calibration.recovery_table().drop(columns="level").to_dict(orient="index")
        out["network"] = amortizer.network_config.to_dict()
        results[name] = out
    if len(elpds) == 2:
        results["elpd_difference_slopes_minus_intercepts"] = elpd_difference(
            elpds["intercepts_slopes"], elpds["intercepts"])
    path = write("radon" if not args.quick else "radon_quick", results)

    for name, out in results.items():
        if name not in MODELS:
            continue
        rows = standard_rows(out, args.steps, args.batch_size, len(counties), f"from {args.refits} timed")
        rows += comparison_rows("amortized vs NUTS", out["vs_nuts"])
        print_table(f"radon: {name}", rows)
    if "elpd_difference_slopes_minus_intercepts" in results:
        d = results["elpd_difference_slopes_minus_intercepts"]
        print(f"\nelpd(slopes) − elpd(intercepts) = {d['elpd_diff']:.2f} ± {d['se']:.2f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
