"""Running the user's program on an observed data set, with the padding masked.

The diagnostics and the NUTS reference need the program itself on real data:
the likelihood of each observation under posterior draws, replicated data
(posterior predictive), the conditional prior of each local parameter given
its parents (pooling), and the joint density NUTS explores. Real data are
ragged, the program is rectangular: the program runs at the padded sizes of a
:class:`PaddedPosterior`, and every data site's log density
is masked to its real instances. Latent sites are never masked: a padded
latent instance is drawn from (or scored under) its prior, which keeps the
joint density proper and leaves the real instances' posterior unchanged.

Data sites whose distribution depends on no latent site (covariates drawn
from a design distribution, such as the standard errors of eight schools) are
*covariates*: their density is a constant of the design, so they are left out
of log-likelihoods and predictive checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.primitives import Messenger

from amortize.prepare import PreparedData
from amortize.graph import ModelGraph, covariate_names, response_names  # re-exported: callers import them here
from amortize.simulate import from_canonical, instance_log_prob, to_canonical

__all__ = [
    "PaddedPosterior",
    "padded_from_prepared",
    "MaskPadding",
    "covariate_names",
    "response_names",
    "program_arguments",
    "program_masks",
    "masked_program",
    "substitutes",
    "log_likelihood_function",
    "pointwise_log_likelihood",
    "posterior_predictive",
    "one_step_predictive",
    "conditional_prior_moments",
    "deterministic_draws",
]


@dataclass(frozen=True)
class PaddedPosterior:
    """A posterior (and its data) back in padded arrays, as the program sees them.

    Attributes
    ----------
    sizes : dict of plate → int
        Padded size of every plate (the most instances any enclosing instance has).
    masks : dict of plate → bool ``(*plate sizes down to it)``
    instances : dict of plate → int ``(n_instances, depth)``
        Padded position of every instance, in the DataTree's order.
    data : dict of site → ``(*plates, *event)``
        Observed values; padded entries repeat the first real value (inside the
        support, and masked out wherever the program uses them).
    latents : dict of site → ``(S, *plates, *event)``
        Posterior draws (chains stacked), padded entries filled the same way;
        empty when the tree has no posterior group.
    num_chains : int
    """

    sizes: dict
    masks: dict
    instances: dict
    data: dict
    latents: dict
    num_chains: int


def padded_from_prepared(prepared: PreparedData, graph: ModelGraph) -> PaddedPosterior:
    """A prepared data set as a :class:`PaddedPosterior` with no draws, without going
    through a DataTree."""
    masks = {p: np.asarray(m[0]) for p, m in prepared.masks.items()}
    sizes = {p: masks[p].shape[-1] for p in graph.plates}
    data = {}
    for name in graph.data_names:
        site = graph.sites[name]
        value = np.asarray(prepared.data[name][0], np.float64)
        value = value.reshape(value.shape[:-1] + tuple(site.event_shape))
        if site.path:
            mask = masks[site.path[-1]]
            first = value[tuple(prepared.instances[site.path[-1]][0])]
            value = np.where(mask.reshape(mask.shape + (1,) * len(site.event_shape)), value, first)
        data[name] = value
    return PaddedPosterior(sizes, masks, dict(prepared.instances), data, {}, 1)


class MaskPadding(Messenger):
    """Mask the log density of the named sites to their real instances.

    ``masks`` maps site → boolean array in the site's batch layout (it must
    broadcast against the site's batch shape).
    """

    def __init__(self, fn=None, masks: Mapping[str, jax.Array] | None = None):
        self.masks = dict(masks or {})
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.masks:
            msg["fn"] = msg["fn"].mask(self.masks[msg["name"]])


def program_arguments(graph: ModelGraph, padded: PaddedPosterior, observed: bool = True) -> dict:
    """Keyword arguments that run the program at the padded sizes on the data.

    With ``observed=False`` only the covariates are passed: the responses are
    then drawn by the program (posterior predictive).
    """
    kwargs = graph.program_kwargs(padded.sizes)
    covariates = set(covariate_names(graph))
    for name in graph.data_names:
        if observed or name in covariates:
            site = graph.sites[name]
            kwargs[name] = from_canonical(jnp.asarray(padded.data[name]), site).astype(site.dtype)
    return kwargs


def program_masks(graph: ModelGraph, padded: PaddedPosterior) -> dict[str, jax.Array]:
    """Per data site inside a plate, its instance mask in the program's batch layout."""
    out = {}
    for name in graph.data_names:
        site = graph.sites[name]
        if site.path:
            out[name] = from_canonical(jnp.asarray(padded.masks[site.path[-1]]), site, event_shape=())
    return out


def masked_program(graph: ModelGraph, padded: PaddedPosterior):
    """The program with its data sites masked to the real instances."""
    return MaskPadding(graph.model, program_masks(graph, padded))


def substitutes(graph: ModelGraph, latents: Mapping[str, np.ndarray], names=None) -> dict:
    """Canonical draws ``(S, *plates, *event)`` → program layout, for ``handlers.substitute``."""
    names = graph.latent_names if names is None else names
    return {n: from_canonical(jnp.asarray(latents[n]), graph.sites[n]) for n in names}


def _site_log_prob(site_trace, site) -> jax.Array:
    """A traced site's log density per instance, canonical ``(*plates,)``."""
    fn, value = site_trace["fn"], site_trace["value"]
    log_prob = fn.log_prob(value)
    if site_trace.get("scale") is not None:
        log_prob = log_prob * site_trace["scale"]
    return instance_log_prob(log_prob, value, site)


def _traced_on_data(graph: ModelGraph, padded: PaddedPosterior):
    """``(draw, key) -> trace`` of the masked program on the observed data, its latents set to ``draw``
    (program layout, see :func:`substitutes`); latents missing from ``draw`` come from their prior."""
    kwargs = program_arguments(graph, padded)
    program = masked_program(graph, padded)

    def run(draw, key):
        return handlers.trace(handlers.seed(handlers.substitute(program, data=draw), key)).get_trace(**kwargs)

    return run


def log_likelihood_function(graph: ModelGraph, padded: PaddedPosterior, keep: tuple[str, ...]):
    """A jitted ``(keys (S,), draws) -> {response: (S, *plates)}`` scoring the data.

    ``draws`` holds the ``keep`` sites in program layout ``(S, *batch, *event)``
    (see :func:`substitutes`); every other latent site is drawn from its
    conditional prior given them, one draw per key. Compile once, call it on
    many draw sets (leave-one-group-out CV does).
    """
    traced = _traced_on_data(graph, padded)
    responses = response_names(graph)

    def one(key, draw):
        trace = traced(draw, key)
        # A log density has the site's batch shape: canonical (*plates,).
        return {n: _site_log_prob(trace[n], graph.sites[n]) for n in responses}

    return jax.jit(jax.vmap(one))


def pointwise_log_likelihood(graph: ModelGraph, padded: PaddedPosterior, key: jax.Array) -> dict[str, jax.Array]:
    """log p(y_i | draw) of every response observation, for every draw in ``padded.latents``.

    Returns
    -------
    dict of response site → ``(S, *plates)`` log densities in the canonical
    layout (zero at padded instances).
    """
    keep = tuple(graph.latent_names)
    values = substitutes(graph, padded.latents, keep)
    num_draws = next(iter(values.values())).shape[0]
    return log_likelihood_function(graph, padded, keep)(jax.random.split(key, num_draws), values)


def posterior_predictive(graph: ModelGraph, padded: PaddedPosterior, key: jax.Array) -> dict[str, jax.Array]:
    """Replicated responses, one per posterior draw, by ``numpyro.infer.Predictive``.

    Returns
    -------
    dict of response site → ``(S, *plates, *event)`` (canonical layout).
    """
    responses = response_names(graph)
    predictive = Predictive(graph.model, posterior_samples=substitutes(graph, padded.latents),
                            return_sites=list(responses), batch_ndims=1)
    replicated = predictive(key, **program_arguments(graph, padded, observed=False))
    return {n: jax.vmap(lambda v, site=graph.sites[n]: to_canonical(v, site))(replicated[n]) for n in responses}


def one_step_predictive(graph: ModelGraph, padded: PaddedPosterior, key: jax.Array) -> dict[str, jax.Array]:
    """Each response observation drawn given the posterior draw and the *observed* rest of the data.

    The program runs on the observed data with every latent set to a
    posterior draw, and each response site's distribution, as traced, is
    sampled once. Along an ordered level this is the one-step-ahead
    predictive: ``y_t`` is drawn from p(y_t | y_{t-1} observed, covariates,
    draw), where :func:`posterior_predictive` simulates whole replicated
    series. For conditionally independent observations the two coincide.

    Returns
    -------
    dict of response site → ``(S, *plates, *event)`` (canonical layout).
    """
    traced = _traced_on_data(graph, padded)
    responses = response_names(graph)
    values = substitutes(graph, padded.latents)
    num_draws = next(iter(values.values())).shape[0]

    def one(draw_key, draw):
        trace_key, *site_keys = jax.random.split(draw_key, len(responses) + 1)
        trace = traced(draw, trace_key)
        return {n: to_canonical(trace[n]["fn"].sample(k), graph.sites[n]) for n, k in zip(responses, site_keys)}

    return jax.jit(jax.vmap(one))(jax.random.split(key, num_draws), values)


def conditional_prior_moments(graph: ModelGraph, padded: PaddedPosterior,
                              names: tuple[str, ...]) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Mean and variance of each named latent's prior given its parents' posterior draws.

    For ``theta_j ~ Normal(mu, tau)`` this is ``(mu, tau**2)`` per draw and group:
    the population distribution the group's parameter is pooled towards.

    Returns
    -------
    dict of site → (mean, variance), each ``(S, *plates, *event)``; sites
    whose distribution has no closed-form mean or variance are left out.
    """
    values = substitutes(graph, padded.latents)
    traced = _traced_on_data(graph, padded)

    def one(draw):
        trace = traced(draw, 0)
        out = {}
        for name in names:
            fn = trace[name]["fn"]
            try:
                mean, variance = fn.mean, fn.variance
            except NotImplementedError:
                continue
            shape = jnp.shape(trace[name]["value"])
            site = graph.sites[name]
            out[name] = (to_canonical(jnp.broadcast_to(mean, shape), site),
                         to_canonical(jnp.broadcast_to(variance, shape), site))
        return out

    return jax.jit(jax.vmap(one))(values)


def deterministic_draws(graph: ModelGraph, padded: PaddedPosterior) -> dict[str, jax.Array]:
    """The program's deterministic sites (:attr:`ModelGraph.deterministics`) at every posterior draw.

    The program runs on the observed data with every latent set to a draw,
    as NumPyro's ``Predictive`` does for ``MCMC.get_samples``.

    Returns
    -------
    dict of deterministic site → ``(S, *plates, *event)`` (canonical layout, padded).
    """
    if not graph.deterministics or not padded.latents:
        return {}
    traced = _traced_on_data(graph, padded)
    values = substitutes(graph, padded.latents)

    def one(draw):
        trace = traced(draw, 0)
        return {n: to_canonical(trace[n]["value"], site) for n, site in graph.deterministics.items()}

    return jax.jit(jax.vmap(one))(values)
