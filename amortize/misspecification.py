"""Data unlike the training simulations: a distance in summary space (Schmitt et al. 2023).

An amortizer is only as good as its training simulations are like the data
it is asked about. Schmitt, Bürkner, Köthe & Radev (2023, "Detecting model
misspecification in amortized Bayesian inference with neural networks")
compare the summary network's output for the observed data with its outputs
for simulations from the program. Here the summary is the global embedding
that every factor conditions on, and the comparison is a Mahalanobis
distance to the simulations' summaries, with a threshold calibrated on
held-out simulations:

* fit the mean and covariance of the summaries of half of the simulations;
* the threshold is the ``quantile`` (99.5%) of the other half's distances, so
  that data from the program itself exceed it with that small probability;
* a data set beyond the threshold lies where the networks were not trained:
  its posterior is an extrapolation (the certificate, where the program has a
  density, says how far off it is).

This works for every program, including simulators without a density.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import numpy as np
from flax import nnx

from amortize.build import AmortizerNetwork, NetworkSpec, embed
from amortize.simulate import Simulation

__all__ = ["SummaryCheck", "make_summarizer", "summary_check", "QUANTILE"]

#: Share of held-out simulations whose distance lies below the threshold.
QUANTILE = 0.995

#: Simulated data sets summarized per call of the summary network.
SUMMARY_CHUNK = 256


def make_summarizer(net: AmortizerNetwork, spec: NetworkSpec):
    """Return a jitted ``(data, masks) -> (B, embed_dim)``: the global summary of each data set."""
    graphdef, state = nnx.split(net)

    @partial(jax.jit)
    def summarize_with(state, data, masks):
        return embed(nnx.merge(graphdef, state), spec, data, masks)["global"]

    return lambda data, masks: summarize_with(state, data, masks)


@dataclass(frozen=True)
class SummaryCheck:
    """Where the training simulations' summaries lie.

    Attributes
    ----------
    mean : ``(E,)``; precision : ``(E, E)``
        Of the summaries of half of the held-out simulations.
    threshold : float
        The :data:`QUANTILE` of the other half's Mahalanobis distances.
    num_simulations : int
    """

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    num_simulations: int
    ranges: dict = field(default_factory=dict)

    def distance(self, summaries) -> np.ndarray:
        """Mahalanobis distances ``(B,)`` of summaries ``(B, E)`` to the simulations' mean."""
        centred = np.asarray(summaries, np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("bi,ij,bj->b", centred, self.precision, centred), 0.0))

    def out_of_range(self, values: dict) -> list[str]:
        """What lies outside the simulations, per data site: e.g. ``"y: mean 8130 (simulations 0.1% to
        99.9%: -12 to 15)"``, for ``values`` of site → the observed values (any shape)."""
        found = []
        for name, value in values.items():
            if name not in self.ranges:
                continue
            value = np.asarray(value, np.float64)
            for statistic, observed in (("mean", value.mean()), ("sd", value.std())):
                low, high = self.ranges[name][statistic]
                if not low <= observed <= high:
                    found.append(f"{name}: {statistic} {observed:.4g} (0.1% to 99.9% of simulations: "
                                 f"{low:.4g} to {high:.4g})")
        return found


def _data_ranges(simulation: Simulation, paths: dict) -> dict:
    """Per data site, the 0.1% and 99.9% quantiles over simulated data sets of the mean and sd of its values."""
    ranges = {}
    valid = np.asarray(simulation.valid)
    for name, path in paths.items():
        data = np.asarray(simulation.data[name], np.float64)[valid]  # (B, *plates, features)
        if path:
            mask = np.asarray(simulation.masks[path[-1]])[valid][..., None] * np.ones(data.shape[-1])
        else:
            mask = np.ones_like(data)
        count = mask.reshape(len(data), -1).sum(1)
        total = (data * mask).reshape(len(data), -1).sum(1)
        mean = total / np.maximum(count, 1)
        centred = (data - mean.reshape((-1,) + (1,) * (data.ndim - 1))) * mask
        sd = np.sqrt((centred**2).reshape(len(data), -1).sum(1) / np.maximum(count, 1))
        ranges[name] = {k: tuple(float(q) for q in np.quantile(v, [0.001, 0.999])) for k, v in
                        (("mean", mean), ("sd", sd))}
    return ranges


def summary_check(summarize, simulation: Simulation, quantile: float = QUANTILE,
                  data_paths: dict | None = None) -> SummaryCheck:
    """Calibrate the check on simulations of the program (held out from training).

    ``summarize`` is :func:`make_summarizer`'s function; ``simulation`` a batch
    of simulated data sets at ragged sizes (invalid ones are left out).
    ``data_paths`` (data site → plate path) adds, per site, the range of the
    simulated data sets' means and sds, which :meth:`SummaryCheck.out_of_range` reports.
    """
    # In chunks: all 2048 data sets at once at the padded maximum sizes put hundreds of MB into each
    # hidden layer, and first touching that memory cost five times the computation (12 s vs 2 s).
    n = len(np.asarray(simulation.valid))
    chunks = [summarize(*jax.tree_util.tree_map(lambda v: v[start:start + SUMMARY_CHUNK],
                                                 (simulation.data, simulation.masks)))
              for start in range(0, n, SUMMARY_CHUNK)]
    summaries = np.concatenate([np.asarray(c, np.float64) for c in chunks])
    summaries = summaries[np.asarray(simulation.valid) & np.all(np.isfinite(summaries), axis=1)]
    half = len(summaries) // 2
    fit, held_out = summaries[:half], summaries[half:]
    mean = fit.mean(0)
    covariance = np.atleast_2d(np.cov(fit, rowvar=False))
    covariance = covariance + 1e-6 * max(float(np.trace(covariance)) / len(covariance), 1e-12) * np.eye(
        len(covariance))
    precision = np.linalg.inv(covariance)
    check = SummaryCheck(mean, precision, np.inf, len(summaries))
    threshold = float(np.quantile(check.distance(held_out), quantile))
    ranges = _data_ranges(simulation, data_paths) if data_paths else {}
    return SummaryCheck(mean, precision, threshold, len(summaries), ranges)
