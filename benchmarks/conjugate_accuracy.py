"""Accuracy against a closed-form posterior: the conjugate two-level Gaussian.

Trains :mod:`amortize.models.conjugate_normal` (known tau and sigma) and, for
several designs (numbers of groups and observations per group) and several
data sets per design drawn from the prior, compares the amortized posterior of
mu and every theta_j with the exact one: |mean error| in exact posterior sds
and |sd ratio - 1|.

Prints a table and writes ``benchmarks/results/conjugate_accuracy.json``.

``--network NAME=VALUE ...`` overrides fields of the default ``NetworkConfig``
(integers, floats or strings), e.g. ``--network local_flow_hidden=32`` to
judge a leaner local flow at the same number of steps.

Usage: ``python benchmarks/conjugate_accuracy.py [--groups 2 6] [--obs 1 6] [--steps 6000] [--network ...]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import amortize as am
from amortize.models import conjugate_normal as cn

RESULTS = Path(__file__).resolve().parent / "results"


def designs(max_groups, max_obs, rng):
    """Balanced, unbalanced and extreme designs within the trained range."""
    g, o = max_groups, max_obs
    return [(2, [1, o]), (2, [o // 2] * 2), (3, [o] * 3), (min(4, g), list(range(1, min(4, g) + 1))),
            (g, [1] * g), (g, [o] * g), (g, list(rng.integers(1, o + 1, g)))]


def _setting(text: str):
    name, _, value = text.partition("=")
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, nargs=2, default=(2, 6))
    parser.add_argument("--obs", type=int, nargs=2, default=(1, 6))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--replicates", type=int, default=5, help="data sets per design")
    parser.add_argument("--draws", type=int, default=8000)
    parser.add_argument("--network", nargs="*", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sizes = {"group": tuple(args.groups), "obs": tuple(args.obs)}
    overrides = dict(_setting(s) for s in args.network)
    amortizer = am.compile(cn.model, data=["y"], sizes=sizes, network=am.NetworkConfig(**overrides))
    start = time.perf_counter()
    amortizer.fit(steps=args.steps, batch_size=args.batch_size, seed=0)
    train_seconds = time.perf_counter() - start
    rows = []
    for replicate in range(args.replicates):
        rng = np.random.default_rng(1000 + replicate)
        for n_group, n_obs in designs(args.groups[1], args.obs[1], rng):
            mu = rng.normal()
            theta = rng.normal(mu, cn.TAU, n_group)
            groups = [rng.normal(theta[j], cn.SIGMA, n) for j, n in enumerate(n_obs)]
            exact = cn.exact_posterior(groups)
            draws, _ = amortizer.draws({"y": groups}, args.draws, seed=replicate)
            mean_err = np.abs(np.r_[draws["mu"].mean() - exact["mu_mean"],
                                    draws["theta"].mean(0) - exact["theta_mean"]])
            sds = np.r_[exact["mu_sd"], exact["theta_sd"]]
            sd_ratio = np.r_[draws["mu"].std(), draws["theta"].std(0)] / sds
            rows.append({"replicate": replicate, "n_obs": [int(n) for n in n_obs],
                         "max_mean_error_sd": float(np.max(mean_err / sds)),
                         "median_mean_error_sd": float(np.median(mean_err / sds)),
                         "max_sd_ratio_error": float(np.max(np.abs(sd_ratio - 1)))})
    print(f"\nconjugate two-level Gaussian, groups {sizes['group']}, obs {sizes['obs']}, "
          f"{args.steps} steps × {args.batch_size} ({train_seconds:.0f} s)")
    print(f"{'design (obs per group)':<32} {'max |mean err|/sd':>18} {'max |sd ratio-1|':>17}")
    for row in rows:
        print(f"{str(row['n_obs']):<32} {row['max_mean_error_sd']:18.3f} {row['max_sd_ratio_error']:17.3f}")
    worst_mean = max(r["max_mean_error_sd"] for r in rows)
    worst_sd = max(r["max_sd_ratio_error"] for r in rows)
    print(f"{'worst over all':<32} {worst_mean:18.3f} {worst_sd:17.3f}")
    out = Path(args.out or RESULTS / f"conjugate_accuracy_g{args.groups[1]}_o{args.obs[1]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sizes": sizes, "network": overrides, "steps": args.steps, "batch_size": args.batch_size,
                               "train_seconds": train_seconds, "worst_mean_error_sd": worst_mean,
                               "worst_sd_ratio_error": worst_sd, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
