"""Posterior draws for prepared data sets: the ancestral pass, then constrained values.

One jitted function per (padded shape, number of draws) does the whole pass:
summaries, every factor's flow in ancestral order, and ``biject_to`` back to
each site's support.
"""

from __future__ import annotations

from functools import partial

import jax
from flax import nnx

from amortize.build import AmortizerNetwork, NetworkSpec, draw_latents
from amortize.prepare import PreparedData, take_instances
from amortize.graph import Factorization, ModelGraph
from amortize.simulate import unpack_factor

__all__ = ["make_sampler", "make_latent_sampler", "constrained", "gather_instances"]


def make_latent_sampler(net: AmortizerNetwork, spec: NetworkSpec):
    """Return ``draw(key, data, masks, num_samples, fixed=None, defensive=None, only=None) -> LatentDraws``
    (with log q).

    Jitted (``num_samples`` and ``only`` static; one compilation per set of
    ``fixed`` factors and shape); closes over a snapshot of the network's
    weights. See :func:`amortize.build.draw_latents`.
    """
    graphdef, state = nnx.split(net)

    # Weights are an argument, not a closure constant: XLA compiles faster and
    # does not copy them into the executable.
    @partial(jax.jit, static_argnums=(4, 6, 7))
    def draw_with(state, key, data, masks, num_samples, fixed, defensive, only):
        model = nnx.merge(graphdef, state)
        return draw_latents(model, spec, key, data, masks, num_samples, fixed=fixed, log_q=True,
                            defensive=defensive, only=only)

    def draw(key, data, masks, num_samples, fixed=None, defensive=None, only=None):
        return draw_with(state, key, data, masks, num_samples, fixed or {}, defensive,
                         None if only is None else tuple(only))

    return draw


def make_sampler(net: AmortizerNetwork, spec: NetworkSpec, graph: ModelGraph,
                 factorization: Factorization, *, class_probabilities: bool = False):
    """Return ``draw(key, data, masks, num_samples) -> {site: (B, S, *plates, *event)}``.

    The returned function is jitted (``num_samples`` static) and closes over a
    snapshot of the network's weights. With ``class_probabilities``, it
    returns ``(draws, probabilities)``, the second mapping a group name
    (``indicator_probabilities``, ``indicator_filtered_probabilities``) to, per
    discrete latent, q(z = k | draw, data) as ``(B, S, *plates, classes)``
    (see :func:`amortize.build.draw_latents`).
    """
    graphdef, state = nnx.split(net)

    @partial(jax.jit, static_argnums=4)
    def draw_with(state, key, data, masks, num_samples):
        model = nnx.merge(graphdef, state)
        draws = draw_latents(model, spec, key, data, masks, num_samples)
        out = constrained(draws.values, graph, factorization)
        if class_probabilities:
            return out, {group: {factorization[name].targets[0]: value for name, value in values.items()}
                         for group, values in draws.probabilities.items()}
        return out

    def draw(key, data, masks, num_samples):
        return draw_with(state, key, data, masks, num_samples)

    return draw


def constrained(values: dict, graph: ModelGraph, factorization: Factorization) -> dict:
    """Unconstrained packed draws per factor → constrained values per site (``biject_to``)."""
    out = {}
    for factor in factorization:
        out.update(unpack_factor(values[factor.name], factor, graph))
    return out


def gather_instances(draws: dict, prepared: PreparedData, graph: ModelGraph) -> dict:
    """Drop padded instances: ``(1, S, *padded plates, *event)`` → ``(S, n_instances, *event)``.

    Nested plates are flattened to one axis of real instances, in the order
    of ``prepared.instances``; global sites come back as ``(S, *event)``.
    """
    out = {}
    for name, value in draws.items():
        site = graph.layout(name)
        out[name] = take_instances(value[0], prepared.instances[site.path[-1]] if site.path else None)
    return out
