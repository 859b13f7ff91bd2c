"""Simulation-based calibration (SBC), parameter recovery and posterior contraction.

One run serves all three (Talts et al. 2018; Säilynoja, Bürkner & Vehtari
2022; Habermann et al. 2024, §3): held-out data sets are simulated from the
program at random sizes in the trained range, the amortizer draws each
posterior, and for every scalar parameter (each component of every global
site, and each component of every local site pooled over its real instances)
the run keeps the true value, the rank of the truth among the draws, and the
posterior mean, sd and central 90% interval.

SBC test: if the amortized posterior is calibrated, the rank of the truth is
uniform. The ranks become probability integral transforms
``(rank + u) / (S + 1)`` with ``u ~ Uniform(0, 1)`` (ties broken at random),
and their ECDF must stay inside a simultaneous 95% band (simulation method of
Säilynoja et al., as ArviZ computes it). A local parameter's instances within
one data set share its global parameters, so their ranks are not independent;
the test therefore uses one randomly chosen instance per data set, and the
plots show all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import jax
import numpy as np
import xarray as xr

from amortize.convert import parameter_names
from amortize.simulate import simulate_in_chunks, unpack_factor

__all__ = ["Calibration", "calibrate", "ecdf_band"]


@lru_cache(maxsize=64)
def _band(n: int, prob: float, n_simulations: int, seed: int):
    from arviz_stats.ecdf_utils import get_pointwise_confidence_band, simulate_confidence_bands

    eval_points = np.arange(1, n) / n
    rng = np.random.default_rng(seed)
    pointwise = simulate_confidence_bands(n, 1, eval_points, prob, n_simulations, rng)
    lower, upper = get_pointwise_confidence_band(pointwise, n, eval_points)
    return eval_points, lower, upper


def ecdf_band(pit: np.ndarray, prob: float = 0.95, n_simulations: int = 1000, seed: int = 0):
    """ECDF of PIT values with a simultaneous ``prob`` band for uniformity.

    Parameters
    ----------
    pit : ``(n,)`` values in [0, 1]

    Returns
    -------
    dict
        ``x`` evaluation points ``(n - 1,)``, ``ecdf`` at them, ``lower`` and
        ``upper`` band, and ``inside`` (True when the ECDF never leaves the band).
    """
    pit = np.sort(np.asarray(pit, float))
    n = len(pit)
    if n < 2:
        raise ValueError("The ECDF band needs at least two PIT values.")
    x, lower, upper = _band(n, float(prob), int(n_simulations), int(seed))
    ecdf = np.searchsorted(pit, x, side="right") / n
    return {"x": x, "ecdf": ecdf, "lower": lower, "upper": upper,
            "inside": bool(np.all((ecdf >= lower) & (ecdf <= upper)))}


@dataclass
class Calibration:
    """Truths, ranks and posterior summaries of held-out simulations.

    Attributes
    ----------
    parameters : dict of name → dict of arrays
        Per scalar parameter (``mu``, ``theta``, ``w[1]``), arrays over its
        units (one per data set for a global parameter, one per real instance
        for a local one): ``truth``, ``rank`` (0 … S), ``mean``, ``sd``,
        ``lower`` and ``upper`` (central 90% interval), ``dataset`` (index of
        the simulated data set), ``pit``.
    levels : dict of name → plate name or None
    num_draws : int
        Posterior draws per data set (S).
    num_datasets : int
        Held-out data sets with finite values.
    """

    parameters: dict
    levels: dict
    num_draws: int
    num_datasets: int
    seed: int = 0
    _tests: dict = field(default_factory=dict, repr=False)

    def sbc_test(self, name: str, prob: float = 0.95) -> dict:
        """ECDF band test of one parameter's ranks (one unit per data set): :func:`ecdf_band`'s dict,
        plus ``pit``, the PIT values tested."""
        key = (name, prob)
        if key not in self._tests:
            p = self.parameters[name]
            rng = np.random.default_rng(self.seed + 7)
            # One unit per data set: the first unit after a random shuffle.
            order = rng.permutation(len(p["dataset"]))
            _, first = np.unique(p["dataset"][order], return_index=True)
            chosen = order[first]
            self._tests[key] = ecdf_band(p["pit"][chosen], prob, seed=self.seed) | {"pit": p["pit"][chosen]}
        return self._tests[key]

    def sbc_table(self, prob: float = 0.95):
        """Pass/fail per parameter: does the rank ECDF stay inside the simultaneous band?

        Returns
        -------
        pandas.DataFrame
            Index: parameter. Columns: ``level``, ``units`` (all ranks),
            ``tested`` (one per data set), ``max_ecdf_deviation`` (largest
            |ECDF − uniform| of the tested ranks), ``passed``.
        """
        import pandas as pd

        rows = {}
        for name, p in self.parameters.items():
            test = self.sbc_test(name, prob)
            rows[name] = {"level": self.levels[name] or "global", "units": len(p["rank"]),
                          "tested": len(test["ecdf"]) + 1,
                          "max_ecdf_deviation": float(np.max(np.abs(test["ecdf"] - test["x"]))),
                          "passed": test["inside"]}
        return pd.DataFrame.from_dict(rows, orient="index")

    def recovery_table(self):
        """Recovery and contraction per parameter.

        Returns
        -------
        pandas.DataFrame
            ``correlation`` of posterior mean and truth; ``r2`` (1 − MSE / prior
            variance); ``contraction`` (1 − mean posterior variance / prior
            variance, the prior variance being that of the simulated truths);
            ``z_mean`` and ``z_sd`` of the z-scores (mean − truth) / sd (0 and
            about 1 when calibrated); ``coverage_90`` of the central 90% intervals.
        """
        import pandas as pd

        rows = {}
        for name, p in self.parameters.items():
            prior_var = np.var(p["truth"])
            z = (p["mean"] - p["truth"]) / np.maximum(p["sd"], 1e-12)
            rows[name] = {
                "level": self.levels[name] or "global",
                "correlation": float(np.corrcoef(p["mean"], p["truth"])[0, 1]),
                "r2": float(1 - np.mean((p["mean"] - p["truth"]) ** 2) / prior_var),
                "contraction": float(1 - np.mean(p["sd"] ** 2) / prior_var),
                "z_mean": float(np.mean(z)), "z_sd": float(np.std(z)),
                "coverage_90": float(np.mean((p["truth"] >= p["lower"]) & (p["truth"] <= p["upper"]))),
            }
        return pd.DataFrame.from_dict(rows, orient="index")

    @property
    def passed(self) -> bool:
        """True when every parameter passes the SBC test."""
        return bool(self.sbc_table()["passed"].all())

    def to_dataset(self) -> xr.Dataset:
        """All arrays as an ``xarray.Dataset``: variable ``<parameter>_<array>`` (e.g. ``mu_rank``,
        ``theta_truth``) over dim ``<parameter>_unit``; names are valid in DataTree and netCDF."""
        variables = {}
        for name, p in self.parameters.items():
            dim = f"{name}_unit"
            for key, value in p.items():
                variables[f"{name}_{key}"] = (dim, np.asarray(value))
        return xr.Dataset(variables, attrs={"num_draws": self.num_draws, "num_datasets": self.num_datasets})

    def to_datatree(self):
        """An ``xarray.DataTree`` for ArviZ: ``prior_sbc`` and ``calibration`` groups.

        ``prior_sbc`` holds, per parameter, the PIT values of the SBC test (one
        unit per data set, as :meth:`sbc_test` uses them) over dims
        ``(chain, draw)`` = ``(1, data sets)``: the layout of
        ``arviz_plots.plot_ecdf_pit``. ``calibration`` is :meth:`to_dataset`.
        """
        sbc = {}
        for name in self.parameters:
            pit = np.asarray(self.sbc_test(name)["pit"])
            sbc[name] = (("chain", "draw"), pit[None, :])
        lengths = {len(v[1][0]) for v in sbc.values()}
        if len(lengths) > 1:  # data sets whose draws were not finite drop out per parameter
            shortest = min(lengths)
            sbc = {k: (v[0], v[1][:, :shortest]) for k, v in sbc.items()}
        return xr.DataTree.from_dict({"prior_sbc": xr.Dataset(sbc), "calibration": self.to_dataset()})


def _components(value: np.ndarray, lead: int, event_ndim: int) -> np.ndarray:
    """``(*lead_dims, *event)`` → ``(*lead_dims, n_components)``."""
    return value.reshape(value.shape[:lead] + (-1,)) if event_ndim else value[..., None]


def calibrate(amortizer, num_datasets: int = 200, num_samples: int = 100, seed: int = 0,
              chunk: int = 25) -> Calibration:
    """Simulate held-out data sets, draw their posteriors and record truths and ranks.

    Parameters
    ----------
    amortizer : Amortizer
        A trained amortizer.
    num_datasets : int
        Held-out simulations, at sizes drawn over the trained range.
    num_samples : int
        Posterior draws per data set (the ranks run from 0 to this number).
    seed : int
    chunk : int
        Data sets per sampler call (one compiled sampler for all).

    Returns
    -------
    Calibration
    """
    sampler = amortizer.sampler()   # an untrained amortizer fails here, before the simulations
    graph, factorization = amortizer.graph, amortizer.factorization
    sim_key, draw_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), 17))
    n_chunks = -(-num_datasets // chunk)
    sim = simulate_in_chunks(sim_key, graph, factorization, n_chunks * chunk, chunk=chunk)

    truths, draws = {}, {}
    for factor in factorization:
        for name, value in unpack_factor(sim.latents[factor.name], factor, graph).items():
            truths[name] = np.asarray(value)
    parts = []
    for i, key in enumerate(jax.random.split(draw_key, n_chunks)):
        rows = slice(i * chunk, (i + 1) * chunk)
        data = {k: v[rows] for k, v in sim.data.items()}
        masks = {k: v[rows] for k, v in sim.masks.items()}
        parts.append(jax.device_get(sampler(key, data, masks, int(num_samples))))
    for name in truths:
        draws[name] = np.concatenate([p[name] for p in parts])  # (N, S, *plates, *event)

    valid = np.asarray(sim.valid)[:num_datasets]
    rng = np.random.default_rng(seed)
    parameters, levels = {}, {}
    for name in graph.latent_names:
        site = graph.sites[name]
        if site.is_discrete:
            continue  # ranks of a discrete truth tie; indicators are checked by their calibration (ECE)
        truth = truths[name][:num_datasets][valid]
        draw = draws[name][:num_datasets][valid]
        event_ndim = len(site.event_shape)
        dataset = np.flatnonzero(valid)
        if site.path:
            mask = np.asarray(sim.masks[site.path[-1]])[:num_datasets][valid]
            dataset = np.broadcast_to(dataset.reshape((-1,) + (1,) * (mask.ndim - 1)), mask.shape)[mask]
            truth = truth[mask]
            draw = np.moveaxis(draw, 1, mask.ndim)[mask]  # (units, S, *event)
        truth = _components(truth, 1, event_ndim)
        draw = _components(draw, 2, event_ndim)
        for c, component in enumerate(parameter_names(name, site.event_shape)):
            t, d = truth[:, c], draw[:, :, c]
            if np.ptp(t) <= 1e-9 * max(1.0, np.abs(t).max()):
                continue  # a fixed component (e.g. the unit diagonal of a Cholesky factor)
            rank = np.sum(d < t[:, None], axis=1)
            parameters[component] = {
                "truth": t, "rank": rank, "mean": d.mean(1), "sd": d.std(1),
                "lower": np.quantile(d, 0.05, axis=1), "upper": np.quantile(d, 0.95, axis=1),
                "dataset": np.asarray(dataset), "pit": (rank + rng.uniform(size=rank.shape)) / (num_samples + 1),
            }
            levels[component] = site.level
    return Calibration(parameters, levels, int(num_samples), int(valid.sum()), seed)
