"""On an accelerator: training throughput by batch size, and what a short budget buys the sleepstudy twin.

Run where JAX's default backend is a GPU (or TPU); on a CPU it runs too and
measures the CPU. Two parts, each written to the JSON as soon as it is done:

1. **Throughput.** The two-level Gaussian (:mod:`amortize.models.hierarchical_normal`)
   in ``benchmarks/devices.py``'s two designs (anchor: 20 groups × 10
   observations; core: 2–50 groups × 1–30 observations, packed), default
   networks, ``--steps`` steps at each of ``--batch-sizes``; the steady rate
   between the second and the last validation (compilation excluded), and
   the seconds before the first validation (compilation included).
2. **The sleepstudy twin** (``learning_curves.py``'s case: lme4's design,
   responses replicated at one NUTS draw; design-focused with the
   self-consistency term on the twin), trained for ``--twin-budget`` seconds
   (compilation included) at each of ``--twin-batch-sizes``, its unrefined
   posterior compared with NUTS on the twin: the worst |Δmean| in NUTS sds
   and the worst |sd ratio − 1| per parameter kind, as in
   ``learning_curves.json``. The twin and its NUTS reference are made once
   on a CPU (``--twin-folder DIR``; made there if absent: needs
   ``../shared/data/sleepstudy``), so the accelerator spends its time on
   training only.

``--figure`` draws the throughput against the batch size from the stored JSON
(beside the 2-core CPU's figures in ``devices.json``) into
``docs/figures/accelerator/throughput.png``, on any machine.

Usage: ``python benchmarks/accelerator.py [--steps 200] [--batch-sizes 64 512 4096]
[--twin-folder DIR] [--twin-budget 150] [--twin-batch-sizes 32 256] [--out PATH] [--quick] [--figure]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _case_study import FIGURES, RESULTS, am, write_to  # noqa: E402
from devices import DESIGNS, worker  # noqa: E402
from learning_curves import curve_row, describe, sleepstudy_twin_inputs, train_sleepstudy_twin  # noqa: E402


def twin_inputs(folder: Path) -> tuple[dict, dict, object]:
    """:func:`learning_curves.sleepstudy_twin_inputs`, kept in ``folder``: read from there, or made and stored."""
    import numpy as np
    import xarray as xr

    data_file, reference_file = folder / "twin.npz", folder / "reference.nc"
    if not reference_file.exists():
        twin, coords, reference = sleepstudy_twin_inputs()
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(data_file, **{k: np.asarray(v) for k, v in twin.items()})
        (folder / "coords.json").write_text(json.dumps({k: [str(x) for x in v] for k, v in coords.items()}))
        reference.to_netcdf(reference_file, engine="h5netcdf")
    twin = dict(np.load(data_file))
    coords = json.loads((folder / "coords.json").read_text())
    return twin, coords, xr.open_datatree(reference_file, engine="h5netcdf").load()


def figure(results: dict, path: Path) -> Path:
    """Data sets per second against the batch size, one line per design, the CPU's batch-64 figures marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu_file = RESULTS / "devices.json"
    cpu = json.loads(cpu_file.read_text()) if cpu_file.exists() else {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for design, color in zip(DESIGNS, ("C0", "C1")):
        rows = sorted((r for r in results["throughput"] if r["design"] == design), key=lambda r: r["batch_size"])
        if not rows:
            continue
        ax.plot([r["batch_size"] for r in rows], [r["simulations_per_second_in_training"] for r in rows], "o-",
                color=color, label=f"{design}, {results['device']}")
        if design in cpu:
            ax.plot([cpu["batch_size"]], [cpu[design]["one_device"]["simulations_per_second"]], "s", color=color,
                    mfc="none", ms=9, label=f"{design}, 2-core CPU (devices.json)")
    ax.set(xscale="log", yscale="log", xlabel="batch size (simulated data sets per step)",
           ylabel="simulated data sets per second", title="Training throughput, two-level Gaussian")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 512, 4096])
    parser.add_argument("--designs", nargs="*", choices=sorted(DESIGNS), default=list(DESIGNS))
    parser.add_argument("--twin-folder", type=Path, default=None, help="the twin and its NUTS reference")
    parser.add_argument("--twin-budget", type=float, default=150.0)
    parser.add_argument("--twin-batch-sizes", nargs="+", type=int, default=[32, 256])
    parser.add_argument("--prepare-only", action="store_true", help="make the twin folder and stop")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/accelerator.json "
                        "(accelerator_quick.json with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--figure", action="store_true", help="draw the stored throughput and stop")
    args = parser.parse_args()
    if args.figure:
        stored = json.loads((args.out or RESULTS / "accelerator.json").read_text())
        print(f"wrote {figure(stored, FIGURES / 'accelerator' / 'throughput.png')}")
        return
    if args.quick:
        args.steps, args.batch_sizes, args.designs, args.twin_budget = 16, [32], ["anchor"], 20.0
        args.twin_batch_sizes = [16]
    args.out = args.out or RESULTS / ("accelerator_quick.json" if args.quick else "accelerator.json")
    if args.prepare_only:
        twin_inputs(args.twin_folder)
        return

    import jax

    device = jax.devices()[0]
    results = {"backend": jax.default_backend(), "device": getattr(device, "device_kind", str(device)),
               "jax": jax.__version__, "cpu_count": os.cpu_count(), "steps": args.steps, "throughput": [],
               "twin": []}
    print(f"backend {results['backend']}: {results['device']}, jax {results['jax']}", flush=True)
    for design in args.designs:
        for batch_size in args.batch_sizes:
            row = worker(design, 1, args.steps, batch_size) | {"design": design, "batch_size": batch_size}
            results["throughput"].append(row)
            write_to(str(args.out), results)
            print(f"{design:<7} batch {batch_size:>5}: {row['simulations_per_second_in_training']:>10,.0f} data sets/s, "
                  f"{row['train_steps_per_second']:6.1f} steps/s, {row['seconds_before_first_validation']:5.1f} s "
                  "before the first validation", flush=True)
    if args.twin_folder is not None:
        twin, coords, reference = twin_inputs(args.twin_folder)
        for batch_size in args.twin_batch_sizes:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a short budget may warn; k̂ is recorded
                amortizer, history, tree = train_sleepstudy_twin(twin, coords, args.twin_budget, batch_size,
                                                                 am.TrainConfig(devices=1))
            results["twin"].append(curve_row(amortizer, history, tree, reference, args.twin_budget, batch_size, start))
            write_to(str(args.out), results)
            print(f"twin {args.twin_budget:.0f} s batch {batch_size}: {describe(results['twin'][-1])}", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
