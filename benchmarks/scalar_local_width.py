"""How wide the flow of a scalar group effect needs to be: 64 vs 32 hidden units at equal steps.

A one-dimensional local factor's flow is one spline whose parameters depend
on the context alone (:class:`amortize.networks.flows.ConditionalFlow`);
its width sets the sampling latency (one pass per draw and group). This
script judges ``NetworkConfig.scalar_local_hidden`` on a model whose local
posteriors are not Gaussian: a hierarchical Poisson model (log rates
eta_j ~ N(mu, tau), 1–5 counts per group, so each group's posterior is
skewed), trained for the same steps and seed at each width. Quality is read
from the program's own density: the certificate's relative ESS and k̂ of
the importance weights, outer (globals) and per group (local), median over
12 simulated data sets of 15 groups. The Gaussian case is
``benchmarks/conjugate_accuracy.py --network scalar_local_hidden=64``.

Prints a table, writes ``benchmarks/results/scalar_local_width.json``.

Usage: ``python benchmarks/scalar_local_width.py [--steps 3000] [--widths 64 32]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from _case_study import print_table, write

import amortize as am


def poisson_levels(n_group, n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.5, 1.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    with numpyro.plate("group", n_group, dim=-2):
        eta = numpyro.sample("eta", dist.Normal(mu, tau))
        with numpyro.plate("obs", n_obs, dim=-1):
            numpyro.sample("y", dist.Poisson(jnp.exp(eta)), obs=y)


def judge(width: int, steps: int) -> dict:
    amortizer = am.compile(poisson_levels, data=["y"], sizes={"group": (3, 20), "obs": (1, 5)},
                           network=am.NetworkConfig(scalar_local_hidden=width))
    start = time.perf_counter()
    amortizer.fit(steps=steps, batch_size=64, seed=0, progress=False)
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(5)
    rows = []
    for i in range(12):
        n = rng.integers(1, 6, 15)
        mu, tau = rng.normal(0.5, 1.0), abs(rng.normal())
        eta = rng.normal(mu, tau, 15)
        y = [rng.poisson(np.exp(eta[j]), n[j]).astype(float) for j in range(15)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = am.certificate(amortizer.sample({"y": y}, 2000, seed=i))
        rows.append([c.khat, c.relative_ess, c.levels["group"]["khat"], c.levels["group"]["relative_ess"]])
    median = np.median(np.array(rows), axis=0)
    return {"train_seconds": seconds, "outer_khat": median[0], "outer_relative_ess": median[1],
            "local_khat": median[2], "local_relative_ess": median[3], "per_data_set": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 32])
    args = parser.parse_args()
    results, rows = {"steps": args.steps, "batch_size": 64}, []
    for width in args.widths:
        r = results[str(width)] = judge(width, args.steps)
        rows += [(f"width {width}: relative ESS outer / local (median)",
                  f"{r['outer_relative_ess']:.2f} / {r['local_relative_ess']:.2f}"),
                 (f"width {width}: k̂ outer / local (median)", f"{r['outer_khat']:.2f} / {r['local_khat']:.2f}"),
                 (f"width {width}: training (s)", f"{r['train_seconds']:.0f}")]
    print_table(f"hierarchical Poisson, {args.steps} steps × 64, 12 data sets of 15 groups", rows)
    print(f"\nwrote {write('scalar_local_width', results)}")


if __name__ == "__main__":
    main()
