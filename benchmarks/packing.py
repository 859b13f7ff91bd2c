"""Ragged packing: training throughput with the observation level packed vs padded, side by side.

Issue 17's designs, the same networks (default ``NetworkConfig``) and batch
size in both layouts, one process, alternating runs:

* core: the two-level Gaussian (:mod:`amortize.models.hierarchical_normal`),
  2–50 groups × 1–30 observations;
* radon: the radon intercepts program (:mod:`amortize.models.radon`),
  Minnesota's training design 40–90 counties × 1–120 houses.

Each run trains ``--steps`` steps (``TrainConfig(pack=False)`` or the default
``pack=True``) and reports the steady rate between its second and last
validation (set-up and compilation excluded), the share of observation slots
that are real, and the packed length (training batches draw their sizes
stratified when packed, which keeps that length close to the mean). Prints a table and writes
``benchmarks/results/packing.json``.

Usage: ``python benchmarks/packing.py [--steps 200] [--batch-size 64] [--only core|radon]``
"""

from __future__ import annotations

import argparse
import os
import platform

import jax
import numpy as np

from _case_study import RESULTS, print_table, steady_training, write_to

import amortize as am
from amortize.models import hierarchical_normal, radon
from amortize.simulate import draw_masks
from amortize.train import packing_totals

DESIGNS = {
    "core": (hierarchical_normal.model, ["y"], {"group": (2, 50), "obs": (1, 30)}),
    "radon": (radon.intercepts, ["floor", "log_radon"], radon.SIZES),
}


def run(name: str, steps: int, batch_size: int, repeats: int) -> dict:
    model, data, sizes = DESIGNS[name]
    amortizer = am.compile(model, data=data, sizes=sizes)
    inner = amortizer.graph.plates[list(sizes)[-1]]
    masks = draw_masks(jax.random.key(1), amortizer.graph, 4096)[inner.name]
    totals = packing_totals(amortizer.spec, lambda k: draw_masks(k, amortizer.graph, batch_size, stratified=True),
                            jax.random.key(2))
    out = {"sizes": {k: list(v) for k, v in sizes.items()}, "real_share": float(np.mean(masks)),
           "padded_slots_per_batch": int(np.prod(masks.shape[1:])) * batch_size,
           "packed_length": totals.get(inner.name)}
    for layout in ("padded", "packed"):
        out[layout] = []
    for _ in range(repeats):
        for layout in ("padded", "packed"):
            config = am.TrainConfig(pack=layout == "packed", validation_every=25)
            history = amortizer.fit(steps=steps, batch_size=batch_size, seed=0, progress=False, config=config)
            out[layout].append(steady_training(history, batch_size))
    for layout in ("padded", "packed"):
        out[f"{layout}_simulations_per_second"] = float(np.median(
            [r["simulations_per_second_in_training"] for r in out[layout]]))
    out["speedup"] = out["packed_simulations_per_second"] / out["padded_simulations_per_second"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=sorted(DESIGNS))
    parser.add_argument("--out", default=str(RESULTS / "packing.json"))
    args = parser.parse_args()
    results = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "backend": jax.default_backend(), "batch_size": args.batch_size, "steps": args.steps}
    rows = []
    for name in [args.only] if args.only else list(DESIGNS):
        r = results[name] = run(name, args.steps, args.batch_size, args.repeats)
        label = f"{name} ({' × '.join(f'{a}–{b}' for a, b in r['sizes'].values())})"
        rows += [(f"{label}: real observation slots", f"{r['real_share']:.0%}"),
                 (f"{label}: observation rows per batch", f"{r['padded_slots_per_batch']:,} → {r['packed_length']:,}"),
                 (f"{label}: simulations / s, padded", f"{r['padded_simulations_per_second']:,.0f}"),
                 (f"{label}: simulations / s, packed", f"{r['packed_simulations_per_second']:,.0f}"),
                 (f"{label}: speed-up", f"{r['speedup']:.2f}×")]
    print_table(f"training throughput, padded vs packed ({results['backend']}, batch {args.batch_size}, "
                f"{os.cpu_count()} cores, default networks)", rows)
    print(f"\nwrote {write_to(args.out, results)}")


if __name__ == "__main__":
    main()
