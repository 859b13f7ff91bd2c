"""A normal prior restricted to ordered vectors: the identifiability constraint of mixture means.

``OrderedNormal(loc, scale)`` has the density of independent normals
``N(loc_k, scale_k)`` on the region x_1 < x_2 < ... < x_K, renormalized, and
support ``constraints.ordered_vector``, so amortize and NUTS both work on it
through NumPyro's ordered-vector bijection. (A ``TransformedDistribution``
of a normal by ``OrderedTransform`` is a different prior: its gaps are
log-normal.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, Normal, constraints
from numpyro.distributions.util import validate_sample

__all__ = ["OrderedNormal"]


class OrderedNormal(Distribution):
    """Independent normals ``(K,)`` conditioned on being in increasing order.

    Sampling is by rejection with ``proposals`` parallel draws per sample:
    the first ordered one is kept. With K = 2 or 3 and well separated
    locations almost every proposal batch holds one; if none does (with K = 3
    and equal locations, probability (5/6)^64 ≈ 1e-5), the last proposal is
    sorted instead.
    """

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.positive}
    support = constraints.ordered_vector
    reparametrized_params = []

    def __init__(self, loc, scale=1.0, *, proposals: int = 64, validate_args=None):
        self.loc = jnp.asarray(loc, jnp.float32)
        self.scale = jnp.broadcast_to(jnp.asarray(scale, jnp.float32), self.loc.shape)
        self.proposals = proposals
        super().__init__(batch_shape=self.loc.shape[:-1], event_shape=self.loc.shape[-1:],
                         validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        draws = self.loc + self.scale * jax.random.normal(key, (self.proposals,) + shape + self.event_shape)
        ordered = jnp.all(jnp.diff(draws, axis=-1) > 0, axis=-1)  # (proposals, *shape)
        first = jnp.argmax(ordered, axis=0)
        chosen = jnp.take_along_axis(draws, first[None, ..., None], axis=0)[0]
        return jnp.where(ordered.any(axis=0)[..., None], chosen, jnp.sort(draws[-1], axis=-1))

    @validate_sample
    def log_prob(self, value):
        # Up to the log probability of the ordered region, a constant in the parameters' values.
        return Normal(self.loc, self.scale).log_prob(value).sum(-1)
