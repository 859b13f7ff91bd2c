"""What limits an amortized mixture posterior: the summary, the flow, or the indicators' classifier?

The program is the one-dimensional two-component Gaussian mixture of
:mod:`amortize.models.gaussian_mixture` (weight, ordered means, common sd,
one indicator per observation), trained over 30–200 observations. Every
variant trains with the same seed, steps (``--steps``, default 2000) and batch
(64), so they differ only in what is named:

* ``deepset``: the default summary (mean and scaled sum of learned instance
  embeddings, with the raw data's mean and sd);
* ``extremes``: also the minimum and maximum (``NetworkConfig(extremes=True)``);
* ``quantiles16``: also 16 quantiles of the data (``NetworkConfig(quantiles=16)``);
* ``set_transformer``: attention pooling (``NetworkConfig(summary="set_transformer")``);
* ``marginal`` / ``marginal_quantiles16``: the same mixture with the
  indicators summed out in the program (``MixtureSameFamily``): no classifier,
  so no classifier loss shaping the shared summary network.

Reported per variant: training seconds; the held-out negative log density of
the true parameters under the amortized posterior (``val_loss_global``,
lower is better: its expectation is the posterior's entropy plus the KL
divergence from it, so at equal data it ranks approximations); and on four
simulated data sets (50, 120, 200 and 80 observations) the worst |Δmean| in
NUTS sds and the worst |sd ratio − 1| of w, mu and sigma against NUTS on the
marginalized program (2 × 1000 draws after 500 warm-up).

Writes ``benchmarks/results/mixture_summaries.json``.

Usage: ``python benchmarks/mixture_summaries.py [--variants deepset quantiles16 ...] [--steps 2000] [--quick]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from _case_study import RESULTS, print_table, write_to
from numpyro.infer import MCMC, NUTS

import amortize as am
from amortize.models import gaussian_mixture as gm

SIZES = {"obs": (30, 200)}
TEST_SETS = ((1, 50), (2, 120), (3, 200), (4, 80))  # (seed, observations)
VARIANTS = ("deepset", "extremes", "quantiles16", "set_transformer", "marginal", "marginal_quantiles16")


def variant_setup(variant: str):
    """The program and network configuration a variant names."""
    program, config = gm.model, am.NetworkConfig()
    name = variant
    if name.startswith("marginal"):
        program, name = gm.marginal_model, name.removeprefix("marginal").lstrip("_") or "deepset"
    if name == "extremes":
        config = dataclasses.replace(config, extremes=True)
    elif name == "set_transformer":
        config = dataclasses.replace(config, summary="set_transformer")
    elif name.startswith("quantiles"):
        config = dataclasses.replace(config, quantiles=int(name.removeprefix("quantiles") or 16))
    elif name != "deepset":
        raise SystemExit(f"unknown variant {variant!r}; choose from {VARIANTS}")
    return program, config


def nuts_reference(y, seed: int, quick: bool) -> dict:
    n = 200 if quick else 1000
    mcmc = MCMC(NUTS(lambda y: gm.marginal_model(y.shape[0], y)), num_warmup=n // 2, num_samples=n, num_chains=2,
                progress_bar=False, chain_method="sequential")
    mcmc.run(jax.random.key(seed), jnp.asarray(y))
    return {k: np.asarray(v) for k, v in mcmc.get_samples().items()}


def run_variant(variant: str, steps: int, quick: bool) -> dict:
    program, config = variant_setup(variant)
    amortizer = am.compile(program, data=["y"], sizes=SIZES, network=config)
    start = time.perf_counter()
    history = amortizer.fit(steps=steps, batch_size=64, seed=0, progress=False)
    train_seconds = time.perf_counter() - start
    data_sets = []
    for seed, n in TEST_SETS:
        _, data = amortizer.simulate({"obs": n}, seed=seed)
        tree = amortizer.sample(data, 4000, seed=0, certify=False)
        reference = nuts_reference(data["y"], seed, quick)
        worst_mean, worst_sd = 0.0, 0.0
        for name in ("w", "mu", "sigma"):
            amortized = np.asarray(tree["posterior"][name]).reshape(4000, -1)
            ref = reference[name].reshape(len(reference[name]), -1)
            worst_mean = max(worst_mean, float(np.max(np.abs(amortized.mean(0) - ref.mean(0)) / ref.std(0))))
            worst_sd = max(worst_sd, float(np.max(np.abs(amortized.std(0) / ref.std(0) - 1))))
        data_sets.append({"observations": n, "max_abs_mean_diff_sd": worst_mean, "max_abs_sd_ratio_minus_1": worst_sd})
    return {"variant": variant, "steps": steps, "batch_size": 64, "train_seconds": train_seconds,
            "val_loss_global": float(np.asarray(history["val_loss_global"])[-1]),
            "data_sets": data_sets}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    args = parser.parse_args()
    steps = 30 if args.quick else args.steps
    path = RESULTS / "mixture_summaries.json"
    results = {} if args.quick or not path.exists() else json.loads(path.read_text())
    rows = []
    for variant in args.variants:
        out = run_variant(variant, steps, args.quick)
        results[f"{variant}_{steps}"] = out
        worst = max(d["max_abs_mean_diff_sd"] for d in out["data_sets"])
        worst_sd = max(d["max_abs_sd_ratio_minus_1"] for d in out["data_sets"])
        rows.append((f"{variant}, {steps} steps", f"{out['train_seconds']:.0f} s; held-out −log q(θ) "
                     f"{out['val_loss_global']:.2f}; worst |Δmean| {worst:.2f} NUTS sd, |sd ratio − 1| {worst_sd:.2f}"))
    print_table("Mixture summaries (1-D two-component mixture, 30–200 observations)", rows)
    if not args.quick:
        print(f"\nwrote {write_to(path, results)}")


if __name__ == "__main__":
    main()
