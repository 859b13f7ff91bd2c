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
import os
import platform

import jax
import numpy as np

from _case_study import RESULTS, draw_latencies_ms, print_table, simulations_per_second, steady_training, write_to

import amortize as am
from amortize.models import air_traffic

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

    results["simulated_panels_per_second_30x20"] = simulations_per_second(
        amortizer.graph, amortizer.factorization, repeats=5)

    history = amortizer.fit(time_limit=args.train_seconds, batch_size=args.batch_size, seed=0, progress=True)
    results.update(steady_training(history, args.batch_size))

    rng = np.random.default_rng(0)
    panel = {n: rng.normal(size=(16, 15)) for n in DATA}
    for name, ms in draw_latencies_ms(amortizer, panel).items():
        results[f"latency_ms_1000_draws_16x15_{name}"] = ms

    label = "fast preset" if args.fast else "default networks"
    rows = [
        ("simulated panels / s (30 × 20)", f"{results['simulated_panels_per_second_30x20']:,.0f}"),
        ("set-up + compilation + first chunk (s)", f"{results['seconds_before_first_validation']:.1f}"),
        ("training steps / s", f"{results['train_steps_per_second']:.2f}"),
        ("simulations / s in training", f"{results['simulations_per_second_in_training']:,.0f}"),
        ("1000 draws, 16 × 15: jitted (ms)", f"{results['latency_ms_1000_draws_16x15_jitted']:.1f}"),
        ("1000 draws, 16 × 15: draws() (ms)", f"{results['latency_ms_1000_draws_16x15_draws']:.1f}"),
        ("1000 draws, 16 × 15: sample() (ms)", f"{results['latency_ms_1000_draws_16x15_sample_datatree']:.1f}"),
    ]
    print_table(f"air-traffic AR(1) speed ({results['backend']}, {label}, batch {args.batch_size})", rows)
    print(f"\nwrote {write_to(args.out, results)}")


if __name__ == "__main__":
    main()
