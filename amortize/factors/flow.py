"""Continuous latents: a conditional normalizing flow on their packed unconstrained values."""

from __future__ import annotations

import jax.numpy as jnp
from numpyro.distributions.transforms import biject_to

from amortize.factors.base import FactorDraw, FactorKind
from amortize.networks import ConditionalFlow

__all__ = ["FlowKind"]


class FlowKind(FactorKind):
    """Every continuous latent site of a factor, unconstrained (``biject_to``) and concatenated."""

    name, collection, standardized, per_instance = "flow", "flows", True, True

    def dim(self, factor, graph) -> int:
        return sum(graph.sites[n].unconstrained_size for n in factor.targets)

    def pack(self, values, factor, graph):
        parts = []
        for name in factor.targets:
            site = graph.sites[name]
            unconstrained = biject_to(site.support).inv(values[name])
            head = unconstrained.shape[: unconstrained.ndim - len(site.unconstrained_shape)]
            parts.append(unconstrained.reshape(head + (-1,)))
        return jnp.concatenate(parts, axis=-1)

    def unpack(self, packed, factor, graph):
        return {name: biject_to(graph.sites[name].support)(chunk) for name, chunk in _chunks(packed, factor, graph)}

    def unpack_and_log_det(self, packed, factor, graph):
        values, log_dets = {}, {}
        for name, chunk in _chunks(packed, factor, graph):
            transform = biject_to(graph.sites[name].support)
            values[name] = transform(chunk)
            log_det = transform.log_abs_det_jacobian(chunk, values[name])
            log_dets[name] = log_det.reshape(packed.shape[:-1] + (-1,)).sum(-1)
        return values, log_dets

    def network(self, factor, config, context_dims, *, rngs):
        kind, hidden, depth = config.flow_settings(local=factor.level is not None, dim=factor.dim)
        return ConditionalFlow(factor.dim, context_dims, layers=config.flow_layers, hidden=hidden, depth=depth,
                               kind=kind, bins=config.spline_bins, bound=config.spline_bound,
                               activation=config.activation, rngs=rngs)

    def log_prob(self, module, factor, value, standardized, context, mask):
        return module.log_prob(standardized, module.project_context(context))

    def draw(self, module, factor, key, context, mask, lead, *, log_q, defensive):
        projected = module.project_context(context)
        projected = jnp.broadcast_to(projected, lead + projected.shape[-2:])
        if log_q:
            value, density = module.sample_and_log_prob(key, projected, defensive)
            return FactorDraw(value, density, {})
        return FactorDraw(module.sample(key, projected), None, {})


def _chunks(packed, factor, graph):
    """Each target site's unconstrained part of ``packed`` ``(*lead, dim)``, as ``(*lead, *unconstrained_shape)``."""
    start = 0
    for name in factor.targets:
        site = graph.sites[name]
        yield name, packed[..., start:start + site.unconstrained_size].reshape(
            packed.shape[:-1] + site.unconstrained_shape)
        start += site.unconstrained_size
