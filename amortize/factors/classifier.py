"""A mixture indicator: a classifier over its classes, shared by every instance of its level."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from amortize.factors.base import FactorDraw, FactorKind
from amortize.networks import ConditionalClassifier

__all__ = ["ClassifierKind"]


class ClassifierKind(FactorKind):
    """One discrete site with values 0..K−1; its packed value is the class index, as one float."""

    name, collection, standardized, per_instance = "classifier", "classifiers", False, True

    def dim(self, factor, graph) -> int:
        return 1

    def pack(self, values, factor, graph):
        return values[factor.targets[0]].astype(jnp.float32)[..., None]

    def unpack(self, packed, factor, graph):
        return {factor.targets[0]: jnp.round(packed[..., 0]).astype(jnp.int32)}

    def network(self, factor, config, context_dims, *, rngs):
        return ConditionalClassifier(factor.classes, context_dims, hidden=config.summary_width, depth=2,
                                     activation=config.activation, rngs=rngs)

    def log_prob(self, module, factor, value, standardized, context, mask):
        return module.log_prob(value[..., 0], context)

    def draw(self, module, factor, key, context, mask, lead, *, log_q, defensive):
        logits = module.logits(context)
        logits = jnp.broadcast_to(logits, lead + logits.shape[-1:])
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        if defensive:  # with probability alpha, a class drawn uniformly
            alpha = defensive[0]
            log_probs = jnp.logaddexp(math.log1p(-alpha) + log_probs, math.log(alpha / factor.classes))
        index = jax.random.categorical(key, log_probs)
        density = jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0] if log_q else None
        return FactorDraw(index.astype(jnp.float32)[..., None], density,
                          {"indicator_probabilities": jax.nn.softmax(logits, axis=-1)})
