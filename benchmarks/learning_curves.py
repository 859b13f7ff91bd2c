"""Learning curves: what a training budget buys, against a converged reference, per parameter kind.

Each case study trains a fresh amortizer (seed 0) for every budget in
``--budgets`` (seconds of wall clock, compilation included; the learning rate
decays to 1% of its peak at the end of each budget) and compares its
unrefined posterior of the real data with a converged reference:

* ``eight_schools``: range training (4–16 schools), batch 128, against
  posteriordb's reference draws (non-centred Stan, 10,000 draws);
* ``radon``: radon intercepts, design-focused on the Minnesota design with the
  self-consistency term on the data (docs/design.md), batch 16, against NUTS
  on the same program (4 × 1000 draws);
* ``sleepstudy_twin``: sleepstudy's simulated twin (responses replicated at
  one NUTS draw on lme4's design: 18 subjects × 10 days), design-focused on
  that design with the self-consistency term on the twin, batch 32, against
  NUTS on the twin (4 × 1000 draws) — the amortizer's own error, without
  the model's misfit to the real data.

For every parameter kind (the global sites, then each plate's sites) the
table gives the worst |Δmean| in reference sds and the worst |sd ratio − 1|,
and the certificate's k̂. ``--batch-size`` replaces each case's own
(eight schools 128, radon 16, the twin 32); rows are kept per budget and
batch size. Results go to ``benchmarks/results/learning_curves.json``;
a run adds its budgets to the curves stored there (replacing a budget run again).

Usage: ``python benchmarks/learning_curves.py [--budgets 60 180 600 1800] [--cases eight_schools radon sleepstudy_twin]
[--batch-size 16] [--quick]``
"""

from __future__ import annotations

import json
import time
import warnings

from _case_study import RESULTS, am, comparison, parse_arguments, run_nuts, shared_data, write
from amortize.models import eight_schools as es
from amortize.models import radon, sleepstudy

CASES = ("eight_schools", "radon", "sleepstudy_twin")
#: Each case's batch size unless ``--batch-size`` says otherwise (rows stored without one had these).
BATCH_SIZES = {"eight_schools": 128, "radon": 16, "sleepstudy_twin": 32}


def _eight_schools():
    data, coords = es.data(), {"school": es.SCHOOLS}
    reference = es.reference_posterior(shared_data("eight_schools"))

    def run(budget, batch_size):
        amortizer = am.compile(es.model, data=["y", "sigma"], sizes=es.SIZES)
        history = amortizer.fit(time_limit=budget, batch_size=batch_size, seed=0, progress=False)
        return amortizer, history, amortizer.sample(data, 4000, seed=1, coords=coords)

    return run, reference


def _radon():
    data, index = radon.load(shared_data("radon"))
    reference, _ = run_nuts(radon.intercepts, data, index=index, num_warmup=1000, num_samples=1000, num_chains=4)

    def run(budget, batch_size):
        amortizer = am.compile(radon.intercepts, data=["floor", "log_radon"], sizes=radon.SIZES,
                               network=am.NetworkConfig(summary_width=32))
        consistency = am.SelfConsistency(data=data, index=index, simulations=False, draws=16, local_draws=8)
        history = amortizer.fit(time_limit=budget, batch_size=batch_size, seed=0, progress=False,
                                design=amortizer.design_of(data, index=index), self_consistency=consistency)
        return amortizer, history, amortizer.sample(data, 4000, seed=1, index=index)

    return run, reference


def sleepstudy_twin_inputs() -> tuple[dict, dict, object]:
    """The twin (responses replicated at one NUTS draw on lme4's design), its coordinates, and NUTS on it."""
    from _case_study import simulated_twin

    data, coords = sleepstudy.load(shared_data("sleepstudy"))
    real, _ = run_nuts(sleepstudy.model, data, coords=coords, num_warmup=1000, num_samples=1000, num_chains=4)
    twin = simulated_twin(real, sleepstudy.model, data)
    reference, _ = run_nuts(sleepstudy.model, twin, coords=coords, num_warmup=1000, num_samples=1000,
                            num_chains=4, seed=1)
    return twin, coords, reference


def train_sleepstudy_twin(twin: dict, coords: dict, budget: float, batch_size: int, config=None):
    """Design-focused training on the twin with the self-consistency term on it; (amortizer, history, posterior)."""
    amortizer = am.compile(sleepstudy.model, data=["days", "reaction"], sizes=sleepstudy.SIZES)
    consistency = am.SelfConsistency(data=twin, simulations=False, draws=16, local_draws=8)
    history = amortizer.fit(time_limit=budget, batch_size=batch_size, seed=0, progress=False,
                            design=amortizer.design_of(twin), self_consistency=consistency, config=config)
    return amortizer, history, amortizer.sample(twin, 4000, seed=2, coords=coords)


def _sleepstudy_twin():
    twin, coords, reference = sleepstudy_twin_inputs()
    return (lambda budget, batch_size: train_sleepstudy_twin(twin, coords, budget, batch_size)), reference


def by_kind(summary: dict, graph) -> dict:
    """Worst |Δmean| (reference sds) and worst |sd ratio − 1| over the sites of each level."""
    kinds: dict[str, dict] = {}
    for site, row in summary.items():
        kind = graph.sites[site].level or "global"
        entry = kinds.setdefault(kind, {"sites": [], "max_abs_mean_diff_sd": 0.0, "max_abs_sd_ratio_minus_1": 0.0})
        entry["sites"].append(site)
        for key in ("max_abs_mean_diff_sd", "max_abs_sd_ratio_minus_1"):
            entry[key] = max(entry[key], float(row[key]))
    return kinds


def curve_row(amortizer, history, tree, reference, budget: float, batch_size: int, start: float) -> dict:
    """One point of a curve: steps made, the certificate's k̂, and the worst errors per kind against ``reference``."""
    summary, _ = comparison(tree, reference)
    return {"budget_seconds": budget, "batch_size": batch_size, "wall_seconds": time.perf_counter() - start,
            "steps": int(len(history["loss"])),
            "certificate_khat": float(tree["posterior"].attrs.get("certificate_khat", float("nan"))),
            "kinds": by_kind(summary, amortizer.graph)}


def describe(row: dict) -> str:
    return f"{row['steps']} steps, k̂ {row['certificate_khat']:.2f}, " + "; ".join(
        f"{k}: {v['max_abs_mean_diff_sd']:.2f} sd, {v['max_abs_sd_ratio_minus_1']:.0%}" for k, v in row["kinds"].items())


def main():
    def extra(parser):
        parser.add_argument("--budgets", nargs="+", type=float, default=[60.0, 180.0, 600.0, 1800.0])
        parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))

    args = parse_arguments(__doc__, steps=None, batch_size=0, extra=extra, quick={"budgets": [15.0]})
    setups = {"eight_schools": _eight_schools, "radon": _radon, "sleepstudy_twin": _sleepstudy_twin}
    # Runs add to the stored curves: a budget run again replaces its row, the others stay.
    stored = RESULTS / "learning_curves.json"
    results = json.loads(stored.read_text()) if stored.exists() and not args.quick else {}
    results = {case: [row | {"batch_size": row.get("batch_size", BATCH_SIZES[case])} for row in rows]
               for case, rows in results.items()}
    for case in args.cases:
        run, reference = setups[case]()
        batch_size = args.batch_size or BATCH_SIZES[case]
        rows = []
        for budget in args.budgets:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # under-trained budgets warn by design; k̂ is recorded
                amortizer, history, tree = run(budget, batch_size)
            rows.append(curve_row(amortizer, history, tree, reference, budget, batch_size, start))
            print(f"{case} {budget:.0f} s: {describe(rows[-1])}", flush=True)
        kept = [row for row in results.get(case, [])
                if row["budget_seconds"] not in args.budgets or row["batch_size"] != batch_size]
        results[case] = sorted(kept + rows, key=lambda row: (row["batch_size"], row["budget_seconds"]))
    path = write("learning_curves" if not args.quick else "learning_curves_quick", results)

    print("\ncase, budget (s), steps, k̂, per kind: worst |Δmean| (ref sd) / worst |sd ratio − 1|")
    for case, rows in results.items():
        for row in rows:
            kinds = "  ".join(f"{k} {v['max_abs_mean_diff_sd']:.2f}/{v['max_abs_sd_ratio_minus_1']:.2f}"
                              for k, v in row["kinds"].items())
            print(f"  {case:<14} {row['budget_seconds']:>6.0f} b{row['batch_size']:<4} {row['steps']:>7} {row['certificate_khat']:>6.2f}  {kinds}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
