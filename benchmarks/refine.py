"""Exact on demand: the certificate and refine= on every real-data case study, against a converged reference.

For each case study: train the amortizer for ``--train-seconds`` (short on
purpose: refinement is meant to make an under-trained amortizer exact), run
the reference (NUTS on the same program, converged, non-centred where the
centred program has a funnel; posteriordb for eight schools), and compare
with the reference, parameter by parameter:

* the amortized draws alone, with their certificate (Pareto k̂, relative ESS,
  per level; and plain importance sampling over all latents for contrast);
* ``refine="psis"`` (importance sampling squared for multilevel programs);
* ``refine="nuts"`` (warm-started: amortized draws as starting points and
  their covariance as the mass matrix, 200 warm-up steps);
* ``refine="auto"``.

Wall times are medians of repeated calls after compilation; the cold NUTS
reference (1000 warm-up + 1000 draws × 4 chains, NumPyro's ``MCMC``, which
compiles anew for every data set) is timed with its compilation, and
``refine="nuts"`` both ways: its first call (compilation included) and one
call again (compiled: what every further data set of the same sizes costs).

For the two DDM models, leave-one-subject-out CV with the new estimator is
timed and elpd_diff(B − A) ± se is written to
``benchmarks/results/refine_ddm_elpd_difference.json`` (the paper: 27.03 ± 1.73).

Prints a table and writes ``benchmarks/results/refine_<study>.json`` per study.

``--suffix _600s`` writes ``refine_<study>_600s.json`` instead (a second
budget beside the three-minute rows; the docs' table shows both).

Usage: ``python benchmarks/refine.py [--studies eight_schools radon_intercepts ...] [--train-seconds 240]
[--focus] [--suffix _600s] [--quick]``
"""

from __future__ import annotations

import argparse
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
from _case_study import comparison, median_seconds, print_table, run_nuts, shared_data, write

import amortize as am
from amortize.models import ddm, eight_schools, old_faithful, radon, sleepstudy

NUTS = {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}


def _air_traffic_panel():
    from numpyro import handlers

    from amortize.models import air_traffic

    trace = handlers.trace(handlers.seed(air_traffic.model, 0)).get_trace(n_country=16, n_time=15)
    return {n: np.asarray(trace[n]["value"]).T for n in ("u", "w", "y")}


def studies(quick: bool, reference_samples: int = 1000) -> dict:
    """name → (model, compile kwargs, data, sample kwargs, reference factory); NUTS references draw
    ``reference_samples`` per chain after 1000 warm-up steps."""
    from amortize.models import air_traffic

    out = {}

    def nuts_reference(model, data, **kwargs):
        return lambda: run_nuts(model, data, **(NUTS | {"num_samples": reference_samples} | kwargs))

    data = eight_schools.data()
    coords = {"school": eight_schools.SCHOOLS}
    folder = shared_data("eight_schools")
    out["eight_schools"] = (eight_schools.model, {"data": ["y", "sigma"], "sizes": eight_schools.SIZES}, data,
                            {"coords": coords},
                            lambda: (eight_schools.reference_posterior(folder),
                                     {"seconds": float("nan"), "converged": True, "source": "posteriordb"}))
    rdata, rindex = radon.load(shared_data("radon"))
    for name, model, extra in (("radon_intercepts", radon.intercepts, {}),
                               ("radon_intercepts_slopes", radon.intercepts_slopes,
                                {"reparam": "noncentered", "target_accept_prob": 0.9})):
        out[name] = (model, {"data": ["floor", "log_radon"], "sizes": radon.SIZES,
                             "network": am.NetworkConfig(summary_width=32)},
                     rdata, {"index": rindex}, nuts_reference(model, rdata, index=rindex, **extra))
    sdata, scoords = sleepstudy.load(shared_data("sleepstudy"))
    out["sleepstudy"] = (sleepstudy.model, {"data": ["days", "reaction"], "sizes": sleepstudy.SIZES}, sdata,
                         {"coords": scoords}, nuts_reference(sleepstudy.model, sdata, coords=scoords,
                                                             target_accept_prob=0.95))
    panel = _air_traffic_panel()
    out["air_traffic"] = (air_traffic.model, {"data": ["u", "w", "y"], "sizes": air_traffic.SIZES}, panel, {},
                          nuts_reference(air_traffic.model, panel, reparam="noncentered", target_accept_prob=0.9))
    y, _ = old_faithful.load(shared_data("old_faithful"))
    out["old_faithful_k2"] = (old_faithful.model_for(2), {"data": ["y"], "sizes": old_faithful.SIZES}, {"y": y}, {},
                              nuts_reference(old_faithful.marginal_model_for(2), {"y": y}))
    ddata, subjects = ddm.load(shared_data("wagenmakers2008_speed_acc"))
    for name, model in (("ddm_a", ddm.model_a), ("ddm_b", ddm.model_b)):
        out[name] = (model, {"data": ["y"], "sizes": ddm.SIZES, "network": am.NetworkConfig(extremes=True)},
                     ddata, {"coords": {"subject": subjects}},
                     nuts_reference(model, ddata, coords={"subject": subjects}, target_accept_prob=0.95,
                                    init_strategy=ddm.nuts_init(ddata)))
    return out


def _worst(summary: dict) -> dict:
    return {"max_abs_mean_diff_sd": max(s["max_abs_mean_diff_sd"] for s in summary.values()),
            "max_abs_sd_ratio_minus_1": max(s["max_abs_sd_ratio_minus_1"] for s in summary.values()),
            "within_0.1sd_10pct": all(s["within_tolerance"] for s in summary.values())}


def reference_halves(reference_tree) -> dict:
    """The reference's first half against its second (chains, or draws for a single chain): how far
    two converged samples of half the size differ by Monte Carlo error alone. A full comparison
    (all draws of both) has about 1/√2 of this noise."""
    import xarray as xr

    posterior = reference_tree["posterior"].to_dataset()
    axis, size = ("chain", posterior.sizes["chain"]) if posterior.sizes["chain"] > 1 else \
        ("draw", posterior.sizes["draw"])
    halves = [xr.DataTree.from_dict({"posterior": posterior.isel({axis: part})})
              for part in (slice(0, size // 2), slice(size // 2, 2 * (size // 2)))]
    summary, _ = comparison(*halves)
    return _worst(summary)


def run_study(name, spec, args) -> dict:
    model, compile_kwargs, data, sample_kwargs, reference = spec
    if args.load:   # an amortizer saved by an earlier run (--save): measure refinement only
        import json

        from _case_study import RESULTS

        amortizer = am.load(Path(args.load) / name, model=model)
        stored = RESULTS / f"refine_{name}{args.suffix}.json"
        if not stored.exists() and (RESULTS / f"refine_{name}.json").exists():
            # A new suffix for an amortizer measured before: its training record is the study's own row
            # when the step counts agree (the same saved amortizer).
            own = json.loads((RESULTS / f"refine_{name}.json").read_text())
            if own.get("train_steps") == len(amortizer.history["loss"]):
                stored = RESULTS / f"refine_{name}.json"
        earlier = json.loads(stored.read_text()) if stored.exists() else {
            "train_seconds": args.train_seconds, "train_steps": len(amortizer.history["loss"]),
            "batch_size": args.batch_size, "focus": args.focus}   # the budget it was trained with
        out = {k: earlier[k] for k in ("train_seconds", "train_steps", "batch_size", "focus") if k in earlier}
        out["loaded"] = str(Path(args.load) / name)
        return _measure(name, amortizer, data, sample_kwargs, reference, args, out)
    amortizer = am.compile(model, **compile_kwargs)
    index = {"index": sample_kwargs["index"]} if "index" in sample_kwargs else {}
    focus = {}
    if args.focus:   # docs/design.md: train on the data's own design, self-consistent on the data
        focus = {"design": amortizer.design_of(data, **index),
                 "self_consistency": am.SelfConsistency(data=data, **index, simulations=False, draws=16,
                                                        local_draws=8)}
    start = time.perf_counter()
    history = amortizer.fit(batch_size=args.batch_size, seed=0, time_limit=args.train_seconds, progress=False,
                            **focus)
    out = {"train_seconds": time.perf_counter() - start, "train_steps": len(history["loss"]),
           "batch_size": args.batch_size, "focus": args.focus}
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        amortizer.save(Path(args.save) / name)
    return _measure(name, amortizer, data, sample_kwargs, reference, args, out)


def _measure(name, amortizer, data, sample_kwargs, reference, args, out) -> dict:
    reference_tree, out["reference"] = reference()
    out["reference_samples_per_chain"] = args.reference_samples
    out["reference_halves"] = reference_halves(reference_tree)
    print(f"[{name}] trained {out['train_steps']} steps in {out['train_seconds']:.0f} s; reference "
          f"{out['reference'].get('seconds', float('nan')):.0f} s, converged {out['reference']['converged']}; "
          f"its halves differ by {out['reference_halves']['max_abs_mean_diff_sd']:.3f} sd, "
          f"{out['reference_halves']['max_abs_sd_ratio_minus_1']:.3f} in sd")

    def sample(**kwargs):
        return amortizer.sample(data, args.draws, seed=1, **sample_kwargs, **kwargs)

    out["amortized_ms"] = 1000 * median_seconds(lambda: sample(certify=False), args.repeats)
    for label, kwargs in (("certified", {}), ("psis", {"refine": "psis"}), ("nuts", {"refine": "nuts"}),
                          ("auto", {"refine": "auto"})):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            try:
                tree = sample(**kwargs)
            except am.RefineError as error:  # e.g. NUTS cannot move a mixture's indicators
                out[label] = {"refused": str(error)}
                print(f"[{name}] {label}: refused ({error})")
                continue
            first = time.perf_counter() - start
        if label == "nuts":   # one call again: compiled, the cost of every further data set of these sizes
            start = time.perf_counter()
            sample(**kwargs)
            seconds = time.perf_counter() - start
        else:
            seconds = first if label == "auto" else median_seconds(lambda: sample(**kwargs), args.repeats)
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in tree["posterior"].attrs.items()
                 if k.startswith(("certificate", "refine", "max_rhat", "divergences", "converged"))}
        summary, _ = comparison(tree, reference_tree)
        out[label] = {"seconds": seconds, "first_call_seconds": first, "attrs": attrs,
                      "vs_reference": summary, "worst": _worst(summary),
                      "warnings": sorted({str(w.message)[:160] for w in caught})}
        worst = out[label]["worst"]
        print(f"[{name}] {label}: {seconds:.2f} s, worst |Δmean| {worst['max_abs_mean_diff_sd']:.3f} sd, "
              f"|sd ratio − 1| {worst['max_abs_sd_ratio_minus_1']:.3f}, k̂ {attrs.get('certificate_khat', 'n/a')}, "
              f"refine {attrs.get('refine')}")
    if name.startswith("ddm"):
        from amortize.diagnostics import logo

        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            elpd = logo(amortizer, data, num_samples=args.logo_samples, **sample_kwargs)
        first = time.perf_counter() - start
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logo(amortizer, data, num_samples=args.logo_samples, **sample_kwargs)
        out["logo"] = {"seconds": first, "repeat_seconds": time.perf_counter() - start,
                       "elpd": elpd.elpd, "se": elpd.se,
                       "elpd_i": np.asarray(elpd.elpd_i).tolist(), "pareto_k": np.asarray(elpd.pareto_k).tolist(),
                       "num_samples": args.logo_samples,
                       "warnings": sorted({str(w.message)[:200] for w in caught})}
        print(f"[{name}] LOGO: {out['logo']['seconds']:.1f} s (compilation included; again: "
              f"{out['logo']['repeat_seconds']:.1f} s), elpd {elpd.elpd:.2f} ± {elpd.se:.2f}, "
              f"worst fold k̂ {max(out['logo']['pareto_k']):.2f}")
    return out


def ddm_elpd_difference(suffix: str = "") -> dict | None:
    """elpd_diff(B − A) from the two DDM studies' LOGO results (of one budget: ``suffix``), when both have run."""
    import json

    from _case_study import RESULTS

    paths = [RESULTS / f"refine_ddm_{m}{suffix}.json" for m in ("a", "b")]
    if not all(p.exists() for p in paths):
        return None
    a, b = (np.asarray(json.loads(p.read_text())["logo"]["elpd_i"]) for p in paths)
    difference = b - a
    return {"elpd_diff_b_minus_a": float(difference.sum()),
            "se": float(np.sqrt(difference.size * np.var(difference))),
            "paper": {"elpd_diff": 27.03, "se": 1.73}}


def _nuts_seconds(result: dict) -> str:
    """First call / again; results from before the compiled run have the first call only."""
    first = result.get("first_call_seconds", result["seconds"])
    return f"{first:.1f}" if result["seconds"] == first else f"{first:.1f} / {result['seconds']:.1f}"


def markdown_table() -> str:
    """The docs' table (docs/refinement.md), from the stored results of every study that has run."""
    import json

    from _case_study import RESULTS

    lines = ["| study | training | reference (its halves: \\|Δmean\\|, \\|sd ratio − 1\\|) | "
             "amortized: worst \\|Δmean\\| (sd), \\|sd ratio − 1\\|, k̂ | "
             "psis: s, worst \\|Δmean\\|, \\|sd ratio − 1\\|, k̂ | nuts: s first call / again, worst \\|Δmean\\|, \\|sd ratio − 1\\|, R-hat, div. | "
             "auto: chose, s |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("refine_*.json")):
        name = path.stem[len("refine_"):]
        if name.endswith("_quick") or name.startswith("ddm_elpd_difference"):
            continue
        r = json.loads(path.read_text())
        ref = r["reference"]
        reference = ("posteriordb" if ref.get("source") == "posteriordb"
                     else f"NUTS {ref['seconds']:.0f} s, {'converged' if ref['converged'] else 'NOT converged'}")
        if "reference_halves" in r:
            halves = r["reference_halves"]
            reference += f" ({halves['max_abs_mean_diff_sd']:.2f}, {halves['max_abs_sd_ratio_minus_1']:.2f})"

        def cells(label):
            if "refused" in r[label]:
                return float("nan"), float("nan"), {}
            w, a = r[label]["worst"], r[label]["attrs"]
            return w["max_abs_mean_diff_sd"], w["max_abs_sd_ratio_minus_1"], a

        m, sd, a = cells("certified")
        row = [name, f"{r['train_seconds']:.0f} s ({r['train_steps']} steps{', focused' if r.get('focus') else ''})",
               reference,
               f"{m:.2f}, {sd:.2f}, {a.get('certificate_khat', float('nan')):.2f}"]
        m, sd, a = cells("psis")
        row.append(f"{r['psis']['seconds']:.2f}, {m:.2f}, {sd:.2f}, {a.get('certificate_khat', float('nan')):.2f}")
        m, sd, a = cells("nuts")
        row.append("refused (discrete latents)" if "refused" in r["nuts"] else
                   f"{_nuts_seconds(r['nuts'])}, {m:.2f}, {sd:.2f}, {a.get('max_rhat', float('nan')):.3f}, "
                   f"{a.get('divergences', '')}")
        row.append(f"{r['auto']['attrs'].get('refine')}, {r['auto']['seconds']:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", nargs="+", default=None)
    parser.add_argument("--train-seconds", type=float, default=240)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--logo-samples", type=int, default=2000, help="global draws per fold in the DDM LOGO")
    parser.add_argument("--focus", action="store_true",
                        help="design-focused training with the self-consistency term on the data (docs/design.md)")
    parser.add_argument("--save", default=None, help="folder to save each trained amortizer in")
    parser.add_argument("--load", default=None,
                        help="folder of amortizers saved with --save: skip training, measure again")
    parser.add_argument("--suffix", default="",
                        help="appended to each study's results name (a second budget beside the three-minute row)")
    parser.add_argument("--reference-samples", type=int, default=1000,
                        help="NUTS reference draws per chain (4 chains; a longer reference resolves 0.1 sd and 10%% "
                             "more finely)")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--markdown", action="store_true", help="print the docs' table from stored results")
    args = parser.parse_args()
    if args.markdown:
        print(markdown_table())
        return
    if args.quick:
        args.train_seconds, args.repeats, args.reference_samples = 20, 1, 100
        global NUTS
        NUTS = {"num_warmup": 100, "num_samples": 100, "num_chains": 2}
    every = studies(args.quick, args.reference_samples)
    for name in args.studies or list(every):
        try:
            out = run_study(name, every[name], args)
        except Exception:  # one study's failure is reported, the others still run
            traceback.print_exc()
            print(f"[{name}] FAILED; going on with the next study", flush=True)
            continue
        path = write(f"refine_{name}{args.suffix}" + ("_quick" if args.quick else ""), out)
        rows = [("training (s, steps)", f"{out['train_seconds']:.0f}, {out['train_steps']}"),
                ("reference (s, converged)", f"{out['reference'].get('seconds', float('nan')):.0f}, "
                                             f"{out['reference']['converged']}"),
                ("amortized draws, no certificate (ms)", f"{out['amortized_ms']:.1f}")]
        for label in ("certified", "psis", "nuts", "auto"):
            r = out[label]
            if "refused" in r:
                rows.append((label, "refused"))
                continue
            rows.append((f"{label}: s | worst |Δmean| sd | |sd ratio−1| | within",
                         f"{r['seconds']:.2f} | {r['worst']['max_abs_mean_diff_sd']:.3f} | "
                         f"{r['worst']['max_abs_sd_ratio_minus_1']:.3f} | {r['worst']['within_0.1sd_10pct']}"))
        print_table(f"{name} ({path.name})", rows)
        if name.startswith("ddm") and not args.quick:
            difference = ddm_elpd_difference(args.suffix)
            if difference:
                write(f"refine_ddm_elpd_difference{args.suffix}", difference)
                print(f"DDM elpd_diff(B − A) = {difference['elpd_diff_b_minus_a']:.2f} ± {difference['se']:.2f} "
                      f"(paper: 27.03 ± 1.73)")


if __name__ == "__main__":
    main()
