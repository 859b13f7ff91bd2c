"""Design-focused against range training, and self-consistency on the data: radon intercepts, same time budget.

Amortizers of :func:`amortize.models.radon.intercepts` (same network, batch
and seed) train for the same wall-clock budget:

* ``range``: sizes drawn over the compiled ranges (40–90 counties × 1–120
  houses) and floors from the design distribution;
* ``design``: on the Minnesota design itself (85 counties of 1–116 houses,
  the observed floors conditioned on: ``fit(design=...)``);
* ``design_sc``: the same, plus the self-consistency term on the Minnesota
  data (``SelfConsistency(data=..., simulations=False)``, 16 joint and 8
  local draws, weight 100, on after 20% of the run).

Each posterior of the Minnesota data, unrefined, is compared with NUTS on the
same program (4 × 1000 draws): worst |Δmean| in NUTS sds and worst |sd ratio
− 1| per site; the certificate's k̂ is recorded. Results go to
``benchmarks/results/design_focus_<time limit>s.json``.

Usage: ``python benchmarks/design_focus.py [--time-limit 600] [--modes range design design_sc] [--quick]``
"""

from __future__ import annotations

import time

from _case_study import (am, comparison, comparison_rows, parse_arguments, print_table, run_nuts, shared_data,
                         steady_training, write)
from amortize.models import radon

MODES = ("range", "design", "design_sc")


def main():
    def extra(parser):
        parser.add_argument("--time-limit", type=float, default=600.0, help="training seconds per amortizer")
        parser.add_argument("--summary-width", type=int, default=32)
        parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))

    args = parse_arguments(__doc__, steps=None, batch_size=16, extra=extra, quick={"time_limit": 20.0})
    data, index = radon.load(shared_data("radon"))
    nuts_tree, nuts_run = run_nuts(radon.intercepts, data, index=index, num_warmup=1000, num_samples=1000,
                                   num_chains=4)
    results = {"nuts": nuts_run, "time_limit": args.time_limit, "batch_size": args.batch_size}
    for mode in args.modes:
        amortizer = am.compile(radon.intercepts, data=["floor", "log_radon"], sizes=radon.SIZES,
                               network=am.NetworkConfig(summary_width=args.summary_width))
        design = amortizer.design_of(data, index=index) if mode != "range" else None
        consistency = None
        if mode == "design_sc":
            consistency = am.SelfConsistency(data=data, index=index, simulations=False, draws=16, local_draws=8)
            results["self_consistency"] = {"draws": 16, "local_draws": 8, "data_weight": consistency.data_weight,
                                           "start": consistency.start, "ramp": consistency.ramp}
        start = time.perf_counter()
        history = amortizer.fit(time_limit=args.time_limit, batch_size=args.batch_size, seed=0, design=design,
                                self_consistency=consistency)
        out = {"train_seconds": time.perf_counter() - start, **steady_training(history, args.batch_size),
               "final_validation_loss": float(history["val_loss"][-1])}
        if design is not None:
            out["design"] = design.describe()
        amortized = amortizer.sample(data, 4000, seed=1, index=index)
        out["certificate"] = {k: v for k, v in amortized["posterior"].attrs.items() if k.startswith("certificate_")}
        out["vs_nuts"], _ = comparison(amortized, nuts_tree)
        results[mode] = out
    path = write(f"design_focus_{args.time_limit:.0f}s" if not args.quick else "design_focus_quick", results)

    for mode in args.modes:
        out = results[mode]
        rows = [("training (s), steps, data sets/s",
                 f"{out['train_seconds']:.0f}, {out['train_steps']}, {out['simulations_per_second_in_training']:.0f}"),
                ("final validation loss", f"{out['final_validation_loss']:.2f}"),
                ("certificate k̂", f"{out['certificate'].get('certificate_khat', float('nan')):.2f}")]
        rows += comparison_rows("amortized vs NUTS", out["vs_nuts"])
        print_table(f"radon intercepts, {mode} training", rows)
    print(f"\nNUTS: {nuts_run['seconds']:.1f} s, converged {nuts_run['converged']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
