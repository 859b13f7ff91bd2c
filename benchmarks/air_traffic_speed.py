"""Air-traffic AR(1) panel: simulation and training throughput, and posterior latency.

Model: :mod:`amortize.models.air_traffic` (the multilevel paper's eqs. 20–21),
2–30 countries × 5–20 years, the years an ordered level (a NumPyro ``scan``).

Measures
--------
1. simulated panels per second (the program, scan included, under jit + vmap,
   at 30 countries × 20 years);
2. training steps per second (batch 64) in the steady state of a
   time-budgeted ``fit``, and the set-up + compilation time before it;
3. latency of 1000 posterior draws for 16 countries × 15 years (the shape of
   the paper's Eurostat panel): median of 20 calls after warm-up, for the
   jitted draws alone, ``Amortizer.draws`` and ``Amortizer.sample``.

The posterior's quality (SBC, recovery, NUTS on the same program) is not
judged here; this script times the machinery. Prints a table and writes
``benchmarks/results/air_traffic_speed.json``.

Usage: ``python benchmarks/air_traffic_speed.py [--train-seconds 120] [--fast] [--out F]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from _case_study import median_seconds

import amortize as am
from amortize.data import prepare_data
from amortize.models import air_traffic
from amortize.simulate import simulate

RESULTS = Path(__file__).resolve().parent / "results"
DATA = ["u", "w", "y"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--fast", action="store_true", help="NetworkConfig.fast()")
    parser.add_argument("--out", default=str(RESULTS / "air_traffic_speed.json"))
    args = parser.parse_args()

    network = am.NetworkConfig.fast() if args.fast else am.NetworkConfig()
    amortizer = am.compile(air_traffic.model, data=DATA, sizes=air_traffic.SIZES, network=network)
    results = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "backend": jax.default_backend(), "network": network.to_dict(), "batch_size": args.batch_size}

    batch = 1024
    step = jax.jit(lambda k: simulate(k, amortizer.graph, amortizer.factorization, batch))
    jax.block_until_ready(step(jax.random.key(0)))
    seconds = median_seconds(lambda: jax.block_until_ready(step(jax.random.key(1))), 5)
    results["simulated_panels_per_second_30x20"] = batch / seconds

    history = amortizer.fit(time_limit=args.train_seconds, batch_size=args.batch_size, seed=0, progress=True)
    first = 1 if len(history["val_step"]) > 2 else 0
    steady_steps = history["val_step"][-1] - history["val_step"][first]
    steady_seconds = history["val_seconds"][-1] - history["val_seconds"][first]
    results.update(train_steps=int(len(history["loss"])),
                   seconds_before_first_validation=float(history["val_seconds"][0]),
                   train_steps_per_second=steady_steps / steady_seconds,
                   simulations_per_second_in_training=steady_steps * args.batch_size / steady_seconds)

    rng = np.random.default_rng(0)
    panel = {n: rng.normal(size=(16, 15)) for n in DATA}
    prepared = prepare_data(amortizer.graph, panel, pad_to=amortizer.graph.max_sizes())
    amortizer.draws(panel, 1000)
    sampler, key = amortizer._sampler, jax.random.key(0)
    results["latency_ms_1000_draws_16x15_jitted"] = 1000 * median_seconds(
        lambda: jax.block_until_ready(sampler(key, prepared.data, prepared.masks, 1000)), 20)
    results["latency_ms_1000_draws_16x15_draws"] = 1000 * median_seconds(lambda: amortizer.draws(panel, 1000), 20)
    results["latency_ms_1000_draws_16x15_sample_datatree"] = 1000 * median_seconds(
        lambda: amortizer.sample(panel, 1000), 20)

    label = "fast preset" if args.fast else "default networks"
    print(f"\nair-traffic AR(1) speed ({results['backend']}, {label}, batch {args.batch_size})")
    rows = [
        ("simulated panels / s (30 × 20)", f"{results['simulated_panels_per_second_30x20']:,.0f}"),
        ("set-up + compilation + first chunk (s)", f"{results['seconds_before_first_validation']:.1f}"),
        ("training steps / s", f"{results['train_steps_per_second']:.2f}"),
        ("simulations / s in training", f"{results['simulations_per_second_in_training']:,.0f}"),
        ("1000 draws, 16 × 15: jitted (ms)", f"{results['latency_ms_1000_draws_16x15_jitted']:.1f}"),
        ("1000 draws, 16 × 15: draws() (ms)", f"{results['latency_ms_1000_draws_16x15_draws']:.1f}"),
        ("1000 draws, 16 × 15: sample() (ms)", f"{results['latency_ms_1000_draws_16x15_sample_datatree']:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
