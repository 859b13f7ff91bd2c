"""Shared steps of the case-study scripts: train, time, compare, validate, write JSON.

Each case study (``eight_schools.py``, ``sleepstudy.py``, ``radon.py``) trains an
amortizer on its program, times amortized inference against NUTS on the same
program, compares the two posteriors, runs the validation report into
``docs/figures/<study>/`` and writes ``benchmarks/results/<study>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import amortize as am
from amortize.demo import find_shared_data
from amortize.reference import ReferenceWarning, compare_posteriors, nuts, summarize_comparison

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures"


def parse_arguments(doc: str, *, steps: int | None, batch_size: int, quick: dict, refits: int | None = None,
                    extra=None):
    """The options every case study takes: ``--steps`` (unless ``steps`` is None: a
    study trained by wall-clock budget), ``--batch-size``, ``--quick``
    (the ``quick`` overrides: a tiny run to check the script) and, with ``refits``,
    ``--refits`` (NUTS refits timed for LOGO, then scaled). ``extra(parser)`` adds more."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    if steps is not None:
        parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    if refits is not None:
        parser.add_argument("--refits", type=int, default=refits, help="NUTS refits timed for LOGO (then scaled)")
    if extra is not None:
        extra(parser)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    args = parser.parse_args()
    if args.quick:
        vars(args).update(quick)
    return args


def figure_folder(name: str, quick: bool) -> Path:
    """Where the validation report goes: ``docs/figures/<name>``, or a temporary
    folder for ``--quick`` runs (which must not overwrite the documented figures)."""
    if quick:
        import tempfile

        return Path(tempfile.mkdtemp(prefix=f"{name}-quick-"))
    return FIGURES / name


def shared_data(name: str) -> Path:
    root = find_shared_data()
    if root is None or not (root / name).is_dir():
        raise SystemExit(f"The shared data folder ../shared/data/{name} is not here; this case study needs it.")
    return root / name


def median_seconds(fn, repeats: int = 10) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def train(amortizer, steps: int, batch_size: int, seed: int = 0) -> dict:
    start = time.perf_counter()
    history = amortizer.fit(steps=steps, batch_size=batch_size, seed=seed, progress=True)
    return {"steps": steps, "batch_size": batch_size, "train_seconds": time.perf_counter() - start,
            "final_validation_loss": float(history["val_loss"][-1])}


def run_nuts(model, data, *, seed=0, **kwargs):
    """NUTS on the same program, timed; convergence problems are recorded, not hidden."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReferenceWarning)
        tree = nuts(model, data, seed=seed, **kwargs)
    seconds = time.perf_counter() - start
    attrs = tree["posterior"].attrs
    return tree, {"seconds": seconds, "converged": bool(attrs["converged"]), "max_rhat": float(attrs["max_rhat"]),
                  "divergences": int(attrs["divergences"]),
                  "warnings": [str(w.message) for w in caught if issubclass(w.category, ReferenceWarning)]}


def timed_logo(amortizer, data, num_samples: int = 4000, **kwargs):
    """Leave-one-group-out CV with the amortizer, and its summary with the wall time."""
    from amortize.diagnostics import logo

    start = time.perf_counter()
    elpd = logo(amortizer, data, num_samples=num_samples, **kwargs)
    return elpd, {"seconds": time.perf_counter() - start, "elpd": elpd.elpd, "se": elpd.se, "p": elpd.p,
                  "warning": elpd.warning}


def simulated_twin(reference, model, data: dict, seed: int = 7) -> dict:
    """A data set drawn from the program itself, shaped like the real one.

    The responses are replicated at one posterior draw of ``reference`` (NUTS on
    the real data), on the real design: covariates and sizes stay as observed.
    Comparing amortized and NUTS posteriors on it separates the amortizer's
    own error from the model's misfit to the real data, which NUTS takes at
    face value and an amortizer trained on the program's simulations need not.
    Rectangular data only.
    """
    from amortize.diagnostics import posterior_predictive

    replicated = posterior_predictive(reference, model, seed=seed)["posterior_predictive"]
    twin = dict(data)
    for name in replicated.data_vars:
        # Instances come back flattened, outer plate first: the rectangular layout.
        twin[name] = np.asarray(replicated[name].isel(chain=0, draw=0)).reshape(np.shape(data[name]))
    return twin


def comparison(amortized, reference) -> tuple[dict, object]:
    table = compare_posteriors(amortized, reference)
    summary = summarize_comparison(table)
    return json.loads(summary.to_json(orient="index")), table


def simulations_per_second(graph, factorization, batch: int = 1024, repeats: int = 10) -> float:
    """Data sets the program simulates per second under jit + vmap, at the graph's largest sizes.

    One compiled call of ``batch`` data sets, timed as the median of ``repeats``
    calls after a warm-up call (which compiles).
    """
    import jax

    from amortize.simulate import simulate

    step = jax.jit(lambda key: simulate(key, graph, factorization, batch))
    return batch / median_seconds(lambda: jax.block_until_ready(step(jax.random.key(1))), repeats)


def steady_training(history: dict, batch_size: int) -> dict:
    """Training speed of a fit from its history, between its second and last validation.

    Set-up, compilation and the first chunk are excluded; validation is
    included. ``seconds_before_first_validation`` is what was excluded.
    """
    first = 1 if len(history["val_step"]) > 2 else 0
    steps = history["val_step"][-1] - history["val_step"][first]
    seconds = history["val_seconds"][-1] - history["val_seconds"][first]
    return {"train_steps": len(history["loss"]),
            "train_steps_per_second": steps / seconds,
            "simulations_per_second_in_training": steps * batch_size / seconds,
            "seconds_before_first_validation": float(history["val_seconds"][0])}


def draw_latencies_ms(amortizer, data: dict, num_samples: int = 1000, repeats: int = 20) -> dict:
    """Median latency (ms, after warm-up) of ``num_samples`` draws for ``data``.

    ``jitted``: the compiled ancestral pass alone; ``draws``: ``Amortizer.draws``
    (NumPy arrays); ``sample_datatree``: ``Amortizer.sample(certify=False)`` (ArviZ
    DataTree); ``sample_certified``: ``Amortizer.sample`` with its certificate.
    """
    import jax

    from amortize.prepare import prepare_data

    prepared = prepare_data(amortizer.graph, data, pad_to=amortizer.graph.max_sizes())
    amortizer.draws(data, num_samples)
    sampler, key = amortizer.sampler(), jax.random.key(0)
    passes = {
        "jitted": lambda: jax.block_until_ready(sampler(key, prepared.data, prepared.masks, num_samples)),
        "draws": lambda: amortizer.draws(data, num_samples),
        "sample_datatree": lambda: amortizer.sample(data, num_samples, certify=False),
        "sample_certified": lambda: amortizer.sample(data, num_samples),
    }
    return {name: 1000 * median_seconds(fn, repeats) for name, fn in passes.items()}


def write_to(path, results: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float))
    return path


def write(name: str, results: dict) -> Path:
    return write_to(RESULTS / f"{name}.json", results)


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    width = max(len(r[0]) for r in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def standard_rows(out: dict, steps: int, batch_size: int, folds: int, refits_label: str) -> list[tuple[str, str]]:
    """The table rows every case study prints: training, timings, convergence, LOGO, SBC."""
    return [("training steps × batch, seconds", f"{steps} × {batch_size}, {out['training']['train_seconds']:.0f}"),
            ("amortized posterior, 4000 draws (s)", f"{out['amortized_seconds_per_data_set']:.4f}"),
            ("NUTS, 4 × 1000 draws (s)", f"{out['nuts']['seconds']:.1f}"),
            ("NUTS converged (max R-hat, divergences)",
             f"{out['nuts']['converged']} ({out['nuts']['max_rhat']:.3f}, {out['nuts']['divergences']})"),
            (f"LOGO, {folds} folds, amortized (s)", f"{out['logo']['seconds']:.2f}"),
            (f"LOGO by {folds} NUTS refits (s, {refits_label})", f"{out['nuts_refits_for_logo_seconds']:.0f}"),
            ("LOGO elpd ± se", f"{out['logo']['elpd']:.2f} ± {out['logo']['se']:.2f}"),
            ("SBC passed", ", ".join(f"{k}: {v}" for k, v in out["sbc"].items()))]


def comparison_rows(label: str, summary: dict) -> list[tuple[str, str]]:
    return [(f"{label}: {site} worst |Δmean| (sd), |sd ratio − 1|, within 0.1/10%",
             f"{s['max_abs_mean_diff_sd']:.3f}, {s['max_abs_sd_ratio_minus_1']:.3f}, {s['within_tolerance']}")
            for site, s in summary.items()]


__all__ = ["am", "parse_arguments", "figure_folder", "shared_data", "median_seconds", "train", "run_nuts",
           "timed_logo", "simulated_twin", "comparison", "write", "write_to", "print_table", "standard_rows",
           "comparison_rows", "simulations_per_second", "steady_training", "draw_latencies_ms", "FIGURES", "RESULTS"]
