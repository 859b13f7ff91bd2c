"""Every core, every device: training throughput on one device vs data-parallel over host devices.

Issue 17 item 2. The two-level Gaussian (:mod:`amortize.models.hierarchical_normal`)
in two training designs, default networks, batch 64:

* anchor: 20 groups × 10 observations (the BayesFlow anchor's setting,
  ``../shared/anchors/``; its recorded figure is 128 data sets/s on this
  kind of machine);
* core: 2–50 groups × 1–30 observations (packed).

Each setting runs in its own Python process, because JAX fixes its CPU device
count when its backend starts: one device (JAX's default on a CPU), and
every core presented as a device (:func:`amortize.use_cpu_cores`), which
trains data-parallel (:mod:`amortize.devices`), and, for how much XLA's own
threads bring, one device pinned to a single core. Reported per run: steady
simulated data sets per second (between the second and the last validation)
and how many cores the process kept busy while training (CPU time / wall
time over the ``fit`` call). Prints a table and writes
``benchmarks/results/devices.json``.

With ``--bayesflow PYTHON`` (a virtual environment holding BayesFlow 2.0.12,
set up as ``../shared/anchors/README.md`` says), the anchor's own script runs
first in that interpreter (3 epochs × 50 steps, batch 64), and the table
sets amortize's steady rate beside BayesFlow's steady rate (after its first
epoch, which includes compilation) measured in the same run.

Usage: ``python benchmarks/devices.py [--steps 300] [--repeats 2] [--designs anchor core]
[--bayesflow ~/venvs/bf/bin/python]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from statistics import median

DESIGNS = {"anchor": {"group": (20, 20), "obs": (10, 10)}, "core": {"group": (2, 50), "obs": (1, 30)}}


def worker(design: str, devices: int, steps: int, batch_size: int) -> dict:
    """One training run in this process, on ``devices`` devices (CPU devices presented with
    :func:`amortize.use_cpu_cores` where more than one; 0: one device pinned to one core)."""
    if devices == 0:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import amortize as am

    if devices > 1:
        am.use_cpu_cores(devices)
    import jax

    from _case_study import steady_training
    from amortize.models import hierarchical_normal

    amortizer = am.compile(hierarchical_normal.model, data=["y"], sizes=DESIGNS[design])
    wall, cpu = time.perf_counter(), time.process_time()
    history = amortizer.fit(steps=steps, batch_size=batch_size, seed=0, progress=False,
                            config=am.TrainConfig(validation_every=25, devices=1 if devices <= 1 else None))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = steady_training(history, batch_size)
    out.update(devices=len(jax.devices()), cores_busy=cpu / wall, backend=jax.default_backend(),
               final_val_loss=float(history["val_loss"][-1]), fit_seconds=wall)
    return out


def bayesflow_anchor(python: str, batch_size: int) -> dict:
    """Run ``../shared/anchors/bayesflow_two_level.py`` briefly in ``python``; its training figures."""
    import tempfile
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "bayesflow_two_level.py"
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, ANCHOR_OUT=out, KERAS_BACKEND="jax")
        env.pop("XLA_FLAGS", None)
        subprocess.run([python, str(script), "--epochs", "3", "--batches", "50", "--batch-size", str(batch_size),
                        "--n-test", "20", "--n-draws-cal", "100"], env=env, check=True, capture_output=True)
        return json.loads((Path(out) / "bayesflow_two_level.json").read_text())["training"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--devices", type=int, default=os.cpu_count(), help="host devices of the parallel runs")
    parser.add_argument("--worker", nargs=2, metavar=("DESIGN", "DEVICES"), help=argparse.SUPPRESS)
    parser.add_argument("--designs", nargs="+", choices=sorted(DESIGNS), default=list(DESIGNS))
    parser.add_argument("--bayesflow", metavar="PYTHON", help="interpreter with BayesFlow 2.0.12, to run the anchor")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.worker:
        print("RESULT" + json.dumps(worker(args.worker[0], int(args.worker[1]), args.steps, args.batch_size)))
        return

    from _case_study import RESULTS, print_table, write_to

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    results = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "batch_size": args.batch_size, "steps": args.steps, "anchor_bayesflow_simulations_per_second": 128}
    rows = []
    if args.bayesflow:
        results["bayesflow"] = bayesflow_anchor(args.bayesflow, args.batch_size)
    for design in args.designs:
        runs = {0: [], 1: [], args.devices: []}
        for _ in range(args.repeats):
            for devices in runs:  # alternating, so that the machine's load affects both alike
                done = subprocess.run([sys.executable, __file__, "--worker", design, str(devices),
                                       "--steps", str(args.steps), "--batch-size", str(args.batch_size)],
                                      capture_output=True, text=True, env=env, check=True)
                line = [x for x in done.stdout.splitlines() if x.startswith("RESULT")][-1]
                runs[devices].append(json.loads(line[len("RESULT"):]))
        r = results[design] = {"sizes": {k: list(v) for k, v in DESIGNS[design].items()}}
        for devices, label in ((0, "one_core"), (1, "one_device"), (args.devices, "parallel")):
            r[label] = {"devices": max(devices, 1), "runs": runs[devices],
                        "simulations_per_second": median(x["simulations_per_second_in_training"] for x in runs[devices]),
                        "cores_busy": median(x["cores_busy"] for x in runs[devices])}
        r["parallel_speedup"] = r["parallel"]["simulations_per_second"] / r["one_device"]["simulations_per_second"]
        name = f"{design} ({' × '.join(f'{a}–{b}' if a != b else f'{a}' for a, b in DESIGNS[design].values())})"
        r["threads_speedup"] = r["one_device"]["simulations_per_second"] / r["one_core"]["simulations_per_second"]
        rows += [(f"{name}: simulations / s, 1 device pinned to 1 core", f"{r['one_core']['simulations_per_second']:,.0f}"),
                 (f"{name}: simulations / s, 1 device", f"{r['one_device']['simulations_per_second']:,.0f}"),
                 (f"{name}: cores busy, 1 device", f"{r['one_device']['cores_busy']:.2f}"),
                 (f"{name}: simulations / s, {args.devices} host devices",
                  f"{r['parallel']['simulations_per_second']:,.0f}"),
                 (f"{name}: cores busy, {args.devices} host devices", f"{r['parallel']['cores_busy']:.2f}"),
                 (f"{name}: data-parallel speed-up", f"{r['parallel_speedup']:.2f}×")]
    if "anchor" in results:
        anchor = results["anchor"]["one_device"]["simulations_per_second"]
        rows.append(("anchor: amortize (1 device) / BayesFlow 2.0.12's recorded 128 per s", f"{anchor / 128:.0f}×"))
        if "bayesflow" in results:
            steady = results["bayesflow"]["steady_datasets_per_s_excl_first_epoch"]
            results["anchor"]["bayesflow_ratio_same_run"] = anchor / steady
            rows += [("anchor: BayesFlow 2.0.12 in this run, steady simulations / s", f"{steady:,.0f}"),
                     ("anchor: amortize / BayesFlow, same run, steady rates", f"{anchor / steady:.0f}×")]
    print_table(f"training throughput by device count (CPU, batch {args.batch_size}, {os.cpu_count()} cores, "
                f"default networks, median of {args.repeats})", rows)
    print(f"\nwrote {write_to(args.out or str(RESULTS / 'devices.json'), results)}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
