"""Leave-one-group-out cross-validation with no refit.

For each instance ``j`` of a top-level plate (a group), the trained amortizer
draws the global parameters given the other groups: the group is masked out
of the data, exactly as if it had never been observed (the summary networks
are masked, so an absent group and a masked one are the same input). All
groups are left out in batched sampler calls. The left-out group's predictive
density at each global draw is then estimated by importance sampling with
the group's own amortized local posterior as proposal (M local draws from
q(θ_j | φ, y_j), the defensive mixture of :mod:`amortize.refine.weights`):

    p̂(y_j | φ) = (1/M) Σ_m p(θ_jm, y_j | φ) / q(θ_jm | φ, y_j)
    elpd_j = log (1/S) Σ_s p̂(y_j | φ^(s)),   φ^(s) ~ q(φ | y_−j)

Only the group's responses are scored: its design covariates (data sites that
depend on no latent) are given, not predicted, and their density is left out.
The older estimator drew θ_j from its prior, which leaves few effective
draws for groups with many observations. Each fold reports the Pareto k̂ of
the terms it averages (``pareto_k``): above 0.7 its estimate rests on a few
draws; raise ``num_samples``. The result is ArviZ's ``ELPDDataLOOKFold`` (one
fold per group), so ``arviz.compare`` ranks models by it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import jax
import numpy as np
import xarray as xr
from scipy.special import logsumexp

from amortize.padded_program import padded_from_prepared
from amortize.prepare import prepare_data, select_instance
from amortize.errors import AmortizeError
from amortize.infer import constrained
from amortize.refine.weights import compiled_density, inner_weights
from amortize.refine.pareto import khat_threshold, log_mean_exp, psis
from amortize.padded_program import covariate_names, log_likelihood_function, substitutes

__all__ = ["logo", "elpd_difference", "LOGOWarning"]


class LOGOWarning(UserWarning):
    """The Monte Carlo estimate of a left-out group's predictive density is unreliable."""


def _leave_out_masks(masks: dict, graph, plate: str, groups: list[int]) -> dict:
    """One data set per left-out group: row ``r`` has instance ``groups[r]`` of top-level
    ``plate``, and everything inside it, masked out. ``masks`` are ``(1, *plates)``."""
    rows = np.arange(len(groups))
    out = {}
    for name, mask in masks.items():
        mask = np.repeat(mask, len(groups), axis=0)
        if graph.plates[name].path[0] == plate:
            mask[rows, groups] = False
        out[name] = mask
    return out


def _group_log_likelihood(values: dict, graph, plate: str, group: int) -> np.ndarray:
    """Sum of the response log densities ``(S, *plates)`` over instance ``group`` of ``plate``."""
    total = 0.0
    for name, value in values.items():
        site = graph.sites[name]
        value = np.asarray(value)
        if site.path and site.path[0] == plate:
            total = total + value[:, group].reshape(value.shape[0], -1).sum(axis=1)
    return np.asarray(total)


def logo(amortizer, data: Mapping[str, Any], *, plate: str | None = None, num_samples: int = 4000,
         seed: int = 0, index: Mapping[str, Any] | None = None, coords: Mapping[str, Any] | None = None,
         chunk: int = 8, inner_draws: int = 4):
    """Leave-one-group-out ELPD of ``data`` under a trained amortizer, without refitting.

    Parameters
    ----------
    amortizer : Amortizer
        Trained.
    data : mapping of site → values
        As for :meth:`Amortizer.sample`.
    plate : str, optional
        The top-level plate whose instances are left out (default: the only one).
    num_samples : int
        Posterior draws per left-out group (and prior draws of its parameters).
    seed : int
    index, coords : as for :meth:`Amortizer.sample`.
    chunk : int
        Left-out data sets per sampler call.
    inner_draws : int
        M, draws of the left-out group's local parameters per global draw. For
        a fixed number S·M of local draws, the variance of the average of the
        p̂(y_j | φ_s) falls as M does (each p̂ is unbiased; the global draws'
        spread is averaged over S); a few local draws keep each term's tail,
        and so the fold's k̂, from resting on single weights. Default 4.

    Returns
    -------
    arviz_stats.ELPDDataLOOKFold
        ``elpd`` (sum over groups), ``se`` (sqrt(J · var(elpd_j))), ``p`` (Σ lpd_j − elpd_j,
        with lpd_j the in-sample log predictive density), ``elpd_i`` (per group,
        dim ``plate``), ``p_kfold_i``, ``pareto_k`` (per group: k̂ of the
        terms averaged; ``good_k`` is the threshold); ``n_data_points`` is the
        number of groups.

    Raises
    ------
    AmortizeError
        No plate, an unknown or nested plate, or fewer than two groups.
    """
    from arviz_stats.utils import ELPDDataLOOKFold

    graph = amortizer.graph
    top = graph.children(None)
    if not top:
        raise AmortizeError("Leave-one-group-out CV needs groups: this program has no plate.")
    if plate is None:
        if len(top) > 1:
            raise AmortizeError(f"The program has several top-level plates ({', '.join(top)}); pass plate=.")
        plate = top[0]
    if plate not in graph.plates:
        raise AmortizeError(f"Unknown plate `{plate}`; the program's plates are {', '.join(graph.plates)}.")
    if graph.plates[plate].parent is not None:
        raise AmortizeError(
            f"Plate `{plate}` is nested inside `{graph.plates[plate].parent}`; leave-one-group-out "
            f"CV leaves out instances of a top-level plate ({', '.join(top)})."
        )
    prepared = prepare_data(graph, data, index=index, coords=coords, pad_to=graph.max_sizes())
    n_groups = len(prepared.instances[plate])
    if n_groups < 2:
        raise AmortizeError(
            f"Leave-one-group-out CV needs at least two instances of `{plate}`; the data have {n_groups}."
        )
    draw = amortizer.latent_sampler()  # raises if untrained
    factorization = amortizer.factorization
    padded = padded_from_prepared(prepared, graph)
    insample_ll = log_likelihood_function(graph, padded, tuple(graph.latent_names))
    key = jax.random.key(seed)
    draw_key, inner_key, full_key = jax.random.split(key, 3)

    # In-sample lpd_j from the full-data posterior (for p_kfold).
    full = draw(full_key, prepared.data, prepared.masks, num_samples)
    sites = jax.device_get(constrained({f: v[0] for f, v in full.values.items()}, graph, factorization))
    values = jax.device_get(insample_ll(jax.random.split(full_key, num_samples), substitutes(graph, sites)))
    lpd = np.array([logsumexp(_group_log_likelihood(values, graph, plate, j)) - math.log(num_samples)
                    for j in range(n_groups)])

    inner = {f.name for f in factorization if f.path[:1] == (plate,)}
    outer = [f.name for f in factorization if f.name not in inner]
    paths = {f.name: f.path for f in factorization}
    cache = {}
    # The predictive density of the left-out group's responses: its design covariates (data sites that
    # depend on no latent, such as eight schools' standard errors) are given, not predicted.
    covariates = covariate_names(graph)
    elpd = np.empty(n_groups)
    pareto_k = np.empty(n_groups)
    groups = [int(g) for g in prepared.instances[plate][:, 0]]
    for start in range(0, n_groups, chunk):
        batch = groups[start:start + chunk]
        # Every sampler call leaves out the same number of groups (the last batch repeats its last
        # group): one compilation serves them all.
        rows = batch + batch[-1:] * (min(chunk, n_groups) - len(batch))
        data_batch = {n: np.repeat(v, len(rows), axis=0) for n, v in prepared.data.items()}
        mask_batch = _leave_out_masks(prepared.masks, graph, plate, rows)
        held_out = jax.device_get(draw(jax.random.fold_in(draw_key, start), data_batch, mask_batch,
                                       num_samples, only=tuple(outer)).values)
        for row, group in enumerate(batch):
            single = select_instance(prepared, graph, plate, group)
            density = compiled_density(graph, factorization, padded_from_prepared(single, graph), (plate,), cache,
                                       exclude=covariates)
            weights, _, _ = inner_weights(draw, density, single, {f: np.asarray(held_out[f][row]) for f in outer},
                                          inner, inner_draws, jax.random.fold_in(inner_key, group), (plate,),
                                          max(num_samples * inner_draws, 1), paths)
            terms = log_mean_exp(weights[plate][..., 0], axis=1)  # log p̂(y_j | φ_s), (S,)
            j = start + row
            elpd[j] = log_mean_exp(terms)
            pareto_k[j] = psis(terms)[1]

    labels = prepared.labels[plate]
    poor = [str(labels[j]) for j in np.flatnonzero(~(pareto_k <= khat_threshold(num_samples)))]
    if poor:
        warnings.warn(
            f"The Monte Carlo estimate of the left-out predictive density is unreliable (Pareto k̂ above "
            f"{khat_threshold(num_samples):.2f}) for {len(poor)} group(s) of `{plate}` "
            f"({', '.join(poor[:5])}{', ...' if len(poor) > 5 else ''}); raise num_samples, or train longer.",
            LOGOWarning, stacklevel=2)
    elpd_i = xr.DataArray(elpd, dims=[plate], coords={plate: labels}, name="elpd_logo")
    p_i = xr.DataArray(lpd - elpd, dims=[plate], coords={plate: labels}, name="p_logo")
    return ELPDDataLOOKFold(
        elpd=float(elpd.sum()), se=float(math.sqrt(n_groups * np.var(elpd))), p=float(np.sum(lpd - elpd)),
        n_samples=int(num_samples), n_data_points=n_groups, scale="log", warning=bool(poor),
        good_k=khat_threshold(num_samples), elpd_i=elpd_i, n_folds=n_groups, p_kfold_i=p_i,
        pareto_k=xr.DataArray(pareto_k, dims=[plate], coords={plate: labels}, name="pareto_k"))


def elpd_difference(a, b) -> dict:
    """``elpd_a − elpd_b`` and its standard error from the paired per-group values.

    Parameters
    ----------
    a, b : ELPD results with ``elpd_i`` over the same groups (e.g. two :func:`logo` runs).

    Returns
    -------
    dict
        ``elpd_diff``, ``se`` (sqrt(J · var(elpd_a,j − elpd_b,j))) and ``z`` (their ratio).
    """
    if np.shape(a.elpd_i) != np.shape(b.elpd_i):
        raise AmortizeError("The two ELPD results cover different groups; run both on the same data.")
    difference = np.asarray(a.elpd_i) - np.asarray(b.elpd_i)
    se = float(math.sqrt(difference.size * np.var(difference)))
    total = float(difference.sum())
    return {"elpd_diff": total, "se": se, "z": total / se if se > 0 else float("inf")}
