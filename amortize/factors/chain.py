"""A hidden Markov chain: the discrete states along an ordered level, one chain per enclosing instance.

The network is a learned linear-chain CRF (:class:`~amortize.networks.SequenceClassifier`);
its log q is the whole chain's, reported at the chain's first step (zeros
elsewhere), so a sum over the steps is the chain's. Chains are always drawn
from q (no defensive mixture).
"""

from __future__ import annotations

import jax.numpy as jnp

from amortize.factors.base import FactorDraw
from amortize.factors.classifier import ClassifierKind
from amortize.networks import SequenceClassifier

__all__ = ["ChainKind"]


class ChainKind(ClassifierKind):
    """Packed like a classifier's indicator (the class index per step, as a float)."""

    name, collection, standardized, per_instance = "chain", "classifiers", False, False

    def network(self, factor, config, context_dims, *, rngs):
        return SequenceClassifier(factor.classes, context_dims, hidden=config.summary_width,
                                  activation=config.activation, rngs=rngs)

    def log_prob(self, module, factor, value, standardized, context, mask):
        return module.log_prob(value[..., 0], context, mask)

    def draw(self, module, factor, key, context, mask, lead, *, log_q, defensive):
        mask = mask[:, None]  # (B, 1, *plates, T): shared by the draws
        states, filtered, smoothed = module.sample(key, context, mask)
        density = module.log_prob(states, context, mask) if log_q else None
        return FactorDraw(states.astype(jnp.float32)[..., None], density,
                          {"indicator_probabilities": smoothed, "indicator_filtered_probabilities": filtered})
