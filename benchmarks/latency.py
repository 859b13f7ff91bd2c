"""Latency of the default and fast configurations: 1000 posterior draws for 50 groups × 20 observations.

The two-level Gaussian (:mod:`amortize.models.hierarchical_normal`) compiled
for 2–50 groups × 1–30 observations; latency does not depend on training, so
each amortizer is trained for a few steps only. Median of 15 calls after a
warm-up (see ``_case_study.draw_latencies_ms``): the jitted pass, ``draws``,
``sample(certify=False)`` (DataTree and summary check) and ``sample`` with its
certificate.

Prints a table, writes ``benchmarks/results/latency.json``.

Usage: ``python benchmarks/latency.py [default] [fast]``
"""

from __future__ import annotations

import sys

import numpy as np
from _case_study import draw_latencies_ms, print_table, write

import amortize as am
from amortize.models import hierarchical_normal

CONFIGS = {"default": am.NetworkConfig(), "fast": am.NetworkConfig.fast()}


def main():
    names = [n for n in sys.argv[1:] if n in CONFIGS] or list(CONFIGS)
    y = np.random.default_rng(0).normal(size=(50, 20))
    results, rows = {}, []
    for name in names:
        amortizer = am.compile(hierarchical_normal.model, data=["y"], sizes={"group": (2, 50), "obs": (1, 30)},
                               network=CONFIGS[name])
        amortizer.fit(steps=5, batch_size=8, seed=0, progress=False)
        results[name] = draw_latencies_ms(amortizer, {"y": y}, repeats=15)
        rows += [(f"{name}: {k} (ms)", f"{v:.1f}") for k, v in results[name].items()]
    print_table("1000 draws, 50 groups × 20 observations", rows)
    print(f"\nwrote {write('latency', results)}")


if __name__ == "__main__":
    main()
