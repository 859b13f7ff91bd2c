"""Posterior predictive checks, pointwise log-likelihood and pooling factors.

Every function takes a DataTree in amortize's layout (from
:meth:`Amortizer.sample` or :func:`amortize.reference.nuts`) and the program
(an Amortizer, its ``graph``, or the NumPyro function itself), and runs the
user's program on the posterior draws.
"""

from __future__ import annotations

import jax
import numpy as np
import xarray as xr

from amortize.convert import DATA_GROUPS, add_groups, from_datatree, instance_dataset
from amortize.prepare import take_instances
from amortize.errors import AmortizeError
from amortize.graph import resolve_graph
from amortize.padded_program import conditional_prior_moments, one_step_predictive, pointwise_log_likelihood
from amortize.padded_program import posterior_predictive as replay_predictive
from amortize.padded_program import response_names

__all__ = ["posterior_predictive", "log_likelihood", "pooling_factors", "predictive_summary", "graph_of"]


def graph_of(model, tree):
    """The compiled graph of ``model`` with the data sites that ``tree``'s data groups hold."""
    names = [n for g in DATA_GROUPS if g in tree.children for n in tree[g].data_vars]
    return resolve_graph(model, names)


def _positions(padded, graph, name):
    site = graph.sites[name]
    return padded.instances[site.path[-1]] if site.path else None


def posterior_predictive(tree, model, seed: int = 0, *, one_step: bool = False):
    """Add a ``posterior_predictive`` group: one replicated data set per posterior draw.

    The program runs under ``numpyro.infer.Predictive`` with every latent site
    set to a posterior draw, at the data's sizes; covariates stay at their
    observed values, responses are drawn.

    Parameters
    ----------
    tree : xarray.DataTree
        With ``posterior`` and ``observed_data``.
    model : Amortizer, ModelGraph or NumPyro program
    seed : int
    one_step : bool
        False (default): whole replicated data sets; along an ordered level
        each replicated series runs on its own replicated past. True: each
        observation is drawn given the draw and the *observed* rest of the
        data, which along an ordered level is the one-step-ahead predictive
        p(y_t | y_{t-1}, covariates, draw) (see :func:`~amortize.diagnostics.plot_series`).
        For conditionally independent observations the two coincide.

    Returns
    -------
    xarray.DataTree
        A copy of ``tree`` with ``posterior_predictive`` (dims as in ``observed_data``
        after ``(chain, draw)``); its ``kind`` attribute says ``"replicated"`` or
        ``"one-step-ahead"``.
    """
    graph = graph_of(model, tree)
    padded = from_datatree(tree, graph)
    draw = one_step_predictive if one_step else replay_predictive
    replicated = jax.device_get(draw(graph, padded, jax.random.key(seed)))
    group = {n: take_instances(v, _positions(padded, graph, n)) for n, v in replicated.items()}
    return add_groups(tree, graph, {"posterior_predictive": group},
                      attrs={"kind": "one-step-ahead" if one_step else "replicated"})


def log_likelihood(tree, model, seed: int = 0):
    """Add a ``log_likelihood`` group: log p(y_i | draw) of every response observation.

    Covariates (data sites that depend on no latent) are not scored. The
    group is what ``arviz.loo`` reads; it is stored in float64 (the program
    evaluates it in float32), so ArviZ's importance weights exp(−log p) do
    not underflow for poorly fitting draws. PSIS-LOO over single
    observations is a check of the observation-level fit; for predicting new
    groups use :func:`amortize.diagnostics.logo`.
    """
    graph = graph_of(model, tree)
    padded = from_datatree(tree, graph)
    values = jax.device_get(pointwise_log_likelihood(graph, padded, jax.random.key(seed)))
    group = {n: np.asarray(take_instances(v, _positions(padded, graph, n)), np.float64) for n, v in values.items()}
    return add_groups(tree, graph, {"log_likelihood": group})


def pooling_factors(tree, model) -> xr.Dataset:
    """Pooling factor of every local parameter in every instance (Gelman & Hill 2006).

    For a local parameter θ_j whose prior given its parents has mean μ_θ and
    variance σ_θ² (for θ_j ~ Normal(μ, τ): μ and τ²),

        λ_j = Var(θ_j − μ_θ | y) / E[σ_θ² | y],

    with both moments over the posterior draws. λ_j near 0: group j's data
    determine θ_j (no pooling); near 1: θ_j is the population value (complete
    pooling). Vector-valued sites get one factor per component.

    Returns
    -------
    xarray.Dataset
        One variable per local latent site, dims ``(<plate>, <site>_event_<i>...)``
        with the plate's coordinates. Sites whose prior has no closed-form
        mean and variance (e.g. LKJ) are left out.

    Raises
    ------
    AmortizeError
        The program has no local latent site.
    """
    graph = graph_of(model, tree)
    local = graph.local_continuous_latents
    if not local:
        raise AmortizeError("Pooling factors need a local latent site (one inside a plate); this program has none.")
    padded = from_datatree(tree, graph)
    moments = jax.device_get(conditional_prior_moments(graph, padded, local))
    out = {}
    for name, (mean, variance) in moments.items():
        where = _positions(padded, graph, name)
        theta = take_instances(padded.latents[name], where)
        deviation = theta - take_instances(np.asarray(mean), where)
        out[name] = np.var(deviation, axis=0) / np.mean(take_instances(np.asarray(variance), where), axis=0)
    return instance_dataset(tree, graph, out, attrs={"quantity": "pooling factor"})


def predictive_summary(tree, model) -> dict:
    """Observed vs replicated statistics per response site (for reports).

    Returns
    -------
    dict of site → dict
        ``observed_mean``, ``observed_sd`` and the replicated data's distribution
        of the mean and sd (``replicated_mean``, ``replicated_sd``: arrays over
        draws), plus the posterior predictive p-values ``p_mean`` and ``p_sd``
        (fraction of draws with a statistic above the observed one).
    """
    graph = graph_of(model, tree)
    out = {}
    predictive = tree["posterior_predictive"]
    for name in response_names(graph):
        observed = np.asarray(tree["observed_data"][name].values)
        replicated = np.asarray(predictive[name].values)
        replicated = replicated.reshape((-1, observed.size))
        rep_mean, rep_sd = replicated.mean(1), replicated.std(1)
        out[name] = {"observed_mean": float(observed.mean()), "observed_sd": float(observed.std()),
                     "replicated_mean": rep_mean, "replicated_sd": rep_sd,
                     "p_mean": float(np.mean(rep_mean > observed.mean())),
                     "p_sd": float(np.mean(rep_sd > observed.std()))}
    return out
