"""Masked, permutation-invariant summary networks for one level.

A level's summary network has two parts (Zaheer et al. 2017; Lee et al. 2019):

* an *instance encoder* φ applied to each instance of the plate, on the
  concatenation of the level's own data and the pooled summaries of the plates
  nested inside it; its output is the instance embedding, which also conditions
  that instance's local factor;
* a *pooler* that turns the embeddings of all instances inside one parent
  instance into one vector (masked mean and scaled sum for ``"deepset"``,
  masked attention for ``"set_transformer"``), appends the mean and standard
  deviation of the raw inputs, the correlations between the level's own data
  features and the instance count, and maps it through ρ. With ``extremes``
  it also pools the maximum of the embeddings and the minimum and maximum of
  the raw inputs: statistics a mean cannot approximate, which parameters that
  bound the data depend on (a diffusion model's non-decision time lies below
  every response time).

Weights are shared over all instances, so the network does not depend on how
many there are.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from amortize.networks.mlp import ACTIVATIONS, KERNEL_INIT, MLP

__all__ = ["LevelSummary", "Padded", "Packed", "masked_mean", "masked_sd", "masked_correlations", "masked_extremes",
           "masked_quantiles", "quantile_levels", "count_features"]

_NEG = -1e9


class Padded(NamedTuple):
    """Sets laid out padded: instances along axis ``-2`` of ``(..., n, f)``, ``mask (..., n)`` marks the real ones."""

    mask: jax.Array

    def sum(self, x: jax.Array) -> jax.Array:
        """``(..., n, f)`` → per-set sums ``(..., f)``."""
        return jnp.sum(x * self.mask[..., None].astype(x.dtype), axis=-2)

    def extremes(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        keep = self.mask[..., None]
        return (jnp.min(jnp.where(keep, x, jnp.inf), axis=-2), jnp.max(jnp.where(keep, x, -jnp.inf), axis=-2))

    def count(self) -> jax.Array:
        """Instances per set ``(...)``, float."""
        return jnp.sum(self.mask, axis=-1).astype(jnp.float32)

    def order_statistics(self, x: jax.Array, rank: jax.Array) -> jax.Array:
        """``x (..., n, f)`` sorted within each set; the values at integer ``rank (..., K)`` → ``(..., K, f)``."""
        ordered = jnp.sort(jnp.where(self.mask[..., None], x, jnp.inf), axis=-2)
        index = jnp.broadcast_to(rank[..., None], rank.shape + x.shape[-1:])
        value = jnp.take_along_axis(ordered, index.astype(jnp.int32), axis=-2)
        return jnp.where(jnp.isfinite(value), value, 0.0)  # an empty set's padding: no inf (nor inf − inf)

    def spread(self, per_set: jax.Array) -> jax.Array:
        """Per-set values ``(..., f)`` → each instance's ``(..., 1, f)`` (broadcasts against ``(..., n, f)``)."""
        return per_set[..., None, :]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["segment", "weight"], meta_fields=["num_sets"])
@dataclasses.dataclass(frozen=True)
class Packed:
    """Sets laid out packed (ragged, no padding): the real instances of all sets in one array ``(T, f)``.

    ``segment (T,)`` says which set each row belongs to (``0 .. num_sets - 1``)
    and ``weight (T,)`` is 1 for a real row and 0 for the filler rows after the
    last one. Built by :func:`amortize.networks.packing.pack`; a pytree whose
    ``num_sets`` is static (it passes through ``jit`` as part of the shape).
    """

    segment: jax.Array
    weight: jax.Array
    num_sets: int

    def sum(self, x: jax.Array) -> jax.Array:
        return jax.ops.segment_sum(x * self.weight[:, None], self.segment, self.num_sets)

    def extremes(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        keep = self.weight[:, None] > 0
        return (jax.ops.segment_min(jnp.where(keep, x, jnp.inf), self.segment, self.num_sets),
                jax.ops.segment_max(jnp.where(keep, x, -jnp.inf), self.segment, self.num_sets))

    def count(self) -> jax.Array:
        return jax.ops.segment_sum(self.weight, self.segment, self.num_sets)

    def order_statistics(self, x: jax.Array, rank: jax.Array) -> jax.Array:
        """``x (T, f)`` sorted within each set; the values at integer ``rank (num_sets, K)`` → ``(num_sets, K, f)``."""
        real = self.weight > 0
        # Sort by set, then value; filler rows go after every set.
        segment = jnp.where(real, self.segment, self.num_sets)
        count = jax.ops.segment_sum(real.astype(jnp.int32), self.segment, self.num_sets)
        start = jnp.cumsum(count) - count
        position = jnp.clip(start[:, None] + rank.astype(jnp.int32), 0, x.shape[0] - 1)

        def one_feature(column):
            order = jnp.lexsort((jnp.where(real, column, jnp.inf), segment))
            return column[order][position]

        return jnp.moveaxis(jax.vmap(one_feature, in_axes=1, out_axes=0)(x), 0, -1)

    def spread(self, per_set: jax.Array) -> jax.Array:
        return per_set[self.segment]


def _sets(mask_or_sets) -> Padded | Packed:
    return mask_or_sets if isinstance(mask_or_sets, (Padded, Packed)) else Padded(mask_or_sets)


def masked_mean(x: jax.Array, mask) -> jax.Array:
    """Mean of ``x (..., n, f)`` over ``n`` where ``mask (..., n)``; zero for empty sets.

    ``mask`` may also be a :class:`Padded` or :class:`Packed` layout (then ``x`` is ``(T, f)``).
    """
    sets = _sets(mask)
    return sets.sum(x) / jnp.maximum(sets.count(), 1.0)[..., None]


def masked_sd(x: jax.Array, mask) -> jax.Array:
    """Standard deviation (divisor n) of ``x (..., n, f)`` over ``n`` where ``mask (..., n)``.

    Zero for sets of fewer than two instances. The small floor inside the
    square root keeps the gradient finite at zero spread.
    """
    _, _, variance = _centred(x, _sets(mask))
    return _sd(variance)


def _centred(x: jax.Array, sets):
    """Per-set mean ``(..., f)``, centred values (``x``'s shape) and per-set variance ``(..., f)``."""
    mean = masked_mean(x, sets)
    centred = x - sets.spread(mean)
    return mean, centred, masked_mean(centred**2, sets)


def _sd(variance: jax.Array) -> jax.Array:
    return jnp.sqrt(variance + 1e-6) - 1e-3


def masked_correlations(x: jax.Array, mask) -> jax.Array:
    """Correlations of every pair of features of ``x (..., n, f)`` over ``n`` where ``mask (..., n)``.

    Returns ``(..., f (f - 1) / 2)`` in the order of ``numpy.triu_indices(f, 1)``.
    A feature without spread in a set (a single instance, a covariate held
    constant) gives correlation 0: the small floor in the denominator keeps the
    value and its gradient finite.
    """
    sets = _sets(mask)
    _, centred, variance = _centred(x, sets)
    return _correlations(centred, variance, sets)


def _correlations(centred: jax.Array, variance: jax.Array, sets) -> jax.Array:
    rows, cols = jnp.triu_indices(centred.shape[-1], 1)
    covariance = masked_mean(centred[..., rows] * centred[..., cols], sets)
    return covariance * jax.lax.rsqrt((variance[..., rows] + 1e-3) * (variance[..., cols] + 1e-3))


def masked_extremes(x: jax.Array, mask) -> tuple[jax.Array, jax.Array]:
    """Minimum and maximum ``(..., f)`` of ``x (..., n, f)`` over ``n`` where ``mask (..., n)``; zero for empty sets."""
    sets = _sets(mask)
    low, high = sets.extremes(x)
    nonempty = (sets.count() > 0)[..., None]
    return jnp.where(nonempty, low, 0.0), jnp.where(nonempty, high, 0.0)


def quantile_levels(k: int) -> jax.Array:
    """``k`` evenly spaced levels strictly inside (0, 1): ``(1, ..., k) / (k + 1)``."""
    return jnp.arange(1, k + 1, dtype=jnp.float32) / (k + 1)


def masked_quantiles(x: jax.Array, mask, k: int) -> jax.Array:
    """Quantiles of every feature of ``x (..., n, f)`` over ``n`` where ``mask (..., n)``, at :func:`quantile_levels`.

    Linear interpolation between order statistics (NumPy's default method);
    zero for empty sets. Returns ``(..., f * k)``, feature-major (the ``k``
    quantiles of feature 0 first). Where a mean-pooled embedding has to learn
    bump functions to see how the data split into clusters, the empirical
    quantile function shows it directly: a mixture's component locations and
    weights are where it climbs and how far.
    """
    sets = _sets(mask)
    n = sets.count()
    position = quantile_levels(k) * jnp.maximum(n - 1.0, 0.0)[..., None]  # (..., k)
    low = jnp.floor(position)
    high = jnp.minimum(low + 1.0, jnp.maximum(n - 1.0, 0.0)[..., None])
    fraction = (position - low)[..., None]
    below, above = sets.order_statistics(x, low), sets.order_statistics(x, high)  # (..., k, f)
    value = below + fraction * (above - below)
    value = jnp.where((n > 0)[..., None, None], value, 0.0)
    return jnp.swapaxes(value, -1, -2).reshape(value.shape[:-2] + (-1,))


#: Levels with more own data features than this pass no correlations (their number grows as f²).
MAX_CORRELATED_FEATURES = 8


def count_features(mask) -> jax.Array:
    """``(..., n)`` mask → ``(..., 2)``: log(1 + n) and 1/sqrt(n) (0 for an empty set).

    Means lose the number of instances; these two features give it back, in
    the forms that posterior precisions and standard errors scale with.
    """
    n = _sets(mask).count()
    return jnp.stack([jnp.log1p(n), jnp.where(n > 0, jax.lax.rsqrt(jnp.maximum(n, 1.0)), 0.0)], axis=-1)


class _MaskedAttentionBlock(nnx.Module):
    """Multi-head attention + MLP with residuals and layer norms (SAB / PMA block)."""

    def __init__(self, width: int, heads: int, activation: str, *, rngs: nnx.Rngs):
        self.attention = nnx.MultiHeadAttention(
            num_heads=heads, in_features=width, decode=False, rngs=rngs
        )
        self.norm_1 = nnx.LayerNorm(width, rngs=rngs)
        self.norm_2 = nnx.LayerNorm(width, rngs=rngs)
        self.feedforward = MLP((width, width, width), activation=activation, rngs=rngs)

    def __call__(self, queries: jax.Array, keys: jax.Array, key_mask: jax.Array) -> jax.Array:
        # mask: (..., heads, q, k); padded keys get no weight.
        mask = key_mask[..., None, None, :]
        attended = self.attention(queries, keys, keys, mask=mask, deterministic=True)
        h = self.norm_1(queries + attended)
        return self.norm_2(h + self.feedforward(h))


class LevelSummary(nnx.Module):
    """Summary network of one plate.

    Parameters
    ----------
    in_features : int
        Features per instance: the level's data plus the nested plates' pooled summaries.
    data_features : int
        How many of the leading input features are the level's own data. Their
        pairwise correlations within each set are passed on with the means and
        sds: with them the sufficient statistics of a within-group linear
        regression (e.g. a response against a covariate) are exact inputs,
        which the encoder would otherwise have to learn to compute (when there
        are 2 to ``MAX_CORRELATED_FEATURES`` of them).
    embed_dim : int
        Width of the instance embedding.
    out_dim : int
        Width of ρ's output; the summary handed to the parent level also
        carries the raw inputs' mean and sd (see :attr:`out_features`).
    width : int
        Hidden width.
    kind : {"deepset", "set_transformer"}
    heads : int
        Attention heads (set transformer only).
    max_size : int
        Largest trained number of instances; sums are divided by it so that
        they stay of order one within the trained range.
    extremes : bool
        Also pool the maximum of the embeddings (deepset) and pass the
        minimum and maximum of the raw inputs next to their moments.
    quantiles : int
        Also pass ``quantiles`` quantiles of each of the level's own data
        features (:func:`masked_quantiles`) next to their moments (0: none).
    """

    def __init__(self, in_features: int, *, embed_dim: int, out_dim: int, width: int,
                 depth: int, kind: str, heads: int, activation: str, max_size: int, rngs: nnx.Rngs,
                 data_features: int = 0, extremes: bool = False, quantiles: int = 0):
        hidden = (width,) * depth
        self.kind = kind
        self.extremes = extremes
        self.data_features = data_features
        self.quantiles = int(quantiles) if data_features else 0
        correlated = data_features if 2 <= data_features <= MAX_CORRELATED_FEATURES else 0
        self.correlated = correlated
        n_moments = ((4 if extremes else 2) * max(in_features, 1) + correlated * (correlated - 1) // 2
                     + self.quantiles * data_features)
        self.max_size = max_size
        self.encoder = MLP((max(in_features, 1), *hidden, embed_dim), activation=activation, rngs=rngs)
        if kind == "deepset":
            pooled_width = (3 if extremes else 2) * embed_dim
        elif kind == "set_transformer":
            pooled_width = width
            self.inner = nnx.Linear(embed_dim, width, kernel_init=KERNEL_INIT, rngs=rngs)
            self.self_attention = _MaskedAttentionBlock(width, heads, activation, rngs=rngs)
            self.pool_attention = _MaskedAttentionBlock(width, heads, activation, rngs=rngs)
            self.seed = nnx.Param(jax.random.normal(rngs.params(), (1, width)) * 0.1)
        else:
            raise ValueError(f"Unknown summary network kind {kind!r}; use 'deepset' or 'set_transformer'.")
        # ρ sees the pooled embeddings, the raw input moments and the two count features.
        self.outer = MLP((pooled_width + n_moments + 2, *hidden, out_dim), activation=activation, rngs=rngs)
        self.activation = activation
        self.out_features = out_dim + n_moments

    def embed(self, inputs: jax.Array) -> jax.Array:
        """Instance embeddings: ``(..., n, in_features)`` → ``(..., n, embed_dim)``."""
        return self.encoder(_nonempty(inputs))

    def pool(self, inputs: jax.Array, embeddings: jax.Array, mask) -> jax.Array:
        """Pool instances into one vector per enclosing instance.

        Parameters
        ----------
        inputs : ``(..., n, in_features)``, or ``(T, in_features)`` packed
            The instances' inputs; their masked mean and standard deviation
            are passed on as is (a skip connection: for data they are the
            sample mean and spread, which location and scale parameters depend
            on and which the embedding would otherwise have to learn to carry
            exactly).
        embeddings : ``(..., n, embed_dim)``, or ``(T, embed_dim)`` packed
        mask : ``(..., n)`` boolean, or a :class:`Padded` / :class:`Packed` layout
            (packed: deepset only; the result is then ``(num_sets, out_features)``)

        Returns
        -------
        ``(..., out_features)``
            ρ's output (``out_dim``) followed by the raw inputs' masked mean and
            sd (``in_features`` each) and the correlations of the data features.
        """
        act = ACTIVATIONS[self.activation]
        sets = _sets(mask)
        if self.kind == "deepset":
            features = act(embeddings)
            # Mean and scaled sum: many posteriors depend on sums over instances
            # (precisions add up), which a mean and a count give only through a
            # product the network would have to learn.
            total = sets.sum(features) / self.max_size
            pooled = [masked_mean(features, sets), total]
            if self.extremes:
                pooled.append(masked_extremes(features, sets)[1])
            pooled = jnp.concatenate(pooled, axis=-1)
        elif isinstance(sets, Packed):
            raise ValueError("Packed sets need the deepset summary; the set transformer attends over padded sets.")
        else:
            mask = sets.mask
            h = self.inner(embeddings)
            lead = h.shape[:-2]
            flat_h = h.reshape((-1,) + h.shape[-2:])
            flat_mask = mask.reshape((-1, mask.shape[-1]))
            h = self.self_attention(flat_h, flat_h, flat_mask)
            seed = jnp.broadcast_to(self.seed[...], (flat_h.shape[0], 1, flat_h.shape[-1]))
            pooled = self.pool_attention(seed, h, flat_mask)[:, 0]
            # An empty set (padded parent instance) attends to nothing: zero it.
            pooled = jnp.where(flat_mask.any(-1, keepdims=True), pooled, 0.0)
            pooled = pooled.reshape(lead + (pooled.shape[-1],))
        raw = _nonempty(inputs)
        # One centring pass serves the means, sds and correlations.
        mean, centred, variance = _centred(raw, sets)
        moments = [mean, _sd(variance)]
        if self.correlated:
            c = self.correlated
            moments.append(_correlations(centred[..., :c], variance[..., :c], sets))
        if self.extremes:
            moments.extend(masked_extremes(raw, sets))
        if self.quantiles:
            moments.append(masked_quantiles(raw[..., :self.data_features], sets, self.quantiles))
        summary = self.outer(jnp.concatenate([pooled, *moments, count_features(sets)], axis=-1))
        # The raw moments also bypass ρ on the way up: a parent level sees, e.g.,
        # each group's exact sample mean and sd, whatever ρ learned to keep
        # (ρ is shared with the local factors, whose gradients dominate).
        return jnp.concatenate([summary, *moments], axis=-1)


def _nonempty(inputs: jax.Array) -> jax.Array:
    """A level with no inputs gets one constant zero feature."""
    if inputs.shape[-1] == 0:
        return jnp.zeros(inputs.shape[:-1] + (1,), inputs.dtype)
    return inputs
