"""Factorization → networks: one summary network per level, one network per factor (of its kind).

The assembled :class:`AmortizerNetwork` is an ``nnx.Module``; the functions
:func:`embed`, :func:`log_prob` and :func:`draw_latents` are pure functions of
the network, its static :class:`NetworkSpec` and arrays, so the training step
and the sampler can be jitted at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from amortize.factors import KINDS, kind_of
from amortize.graph import Factorization, ModelGraph, factor_kind
from amortize.networks import MLP, LevelSummary
from amortize.networks.config import AUTO_QUANTILES, NetworkConfig
from amortize.simulate import factor_dim

__all__ = [
    "NetworkConfig",
    "NetworkSpec",
    "AmortizerNetwork",
    "SummarizedNetwork",
    "Standardization",
    "network_spec",
    "summary_networks",
    "data_standardization",
    "packable_levels",
    "embed",
    "log_prob",
    "draw_latents",
    "LatentDraws",
]


@dataclass(frozen=True)
class LevelSpec:
    name: str
    path: tuple[str, ...]
    data: tuple[tuple[str, int], ...]  # (site, features)
    children: tuple[str, ...]
    max_size: int
    window: int = 1  # steps an embedding sees: 1 for a set, NetworkConfig.ordered_window (>= 2) for an ordered level

    @property
    def ordered(self) -> bool:
        return self.window > 1

    @property
    def data_features(self) -> int:
        """Own data features per instance; an ordered level adds those of the earlier steps in its window."""
        return sum(f for _, f in self.data) * self.window

    @property
    def input_features(self) -> int:
        """Data features plus, on an ordered level, one indicator per lag (does step t - k exist?)."""
        return self.data_features + self.window - 1


@dataclass(frozen=True)
class FactorSpec:
    name: str
    level: str | None
    path: tuple[str, ...]
    dim: int
    parent_factors: tuple[tuple[str, int], ...]  # (factor, dim), outermost first
    classes: int | None = None  # a classifier factor's number of classes; None for a flow
    markov: bool = False  # a classifier along an ordered level: one chain per enclosing instance

    @property
    def kind(self) -> str:
        """The kind of network that models this factor (see :mod:`amortize.factors`)."""
        return factor_kind(self.classes, self.markov)


@dataclass(frozen=True)
class NetworkSpec:
    """Static, hashable structure the pure network functions need."""

    levels: tuple[LevelSpec, ...]  # parents before children
    root_data: tuple[tuple[str, int], ...]
    top_plates: tuple[str, ...]
    factors: tuple[FactorSpec, ...]  # ancestral order
    config: NetworkConfig


def network_spec(graph: ModelGraph, factorization: Factorization | None, config: NetworkConfig) -> NetworkSpec:
    """Read off the structure of the networks from the factorization.

    ``factorization=None``: the hierarchical summary only, no factor networks
    (the model-comparison classifier, :mod:`amortize.model_classifier`).
    """
    def data_at(level):
        return tuple((n, graph.sites[n].event_size) for n in graph.sites_at(level, "data"))

    levels = tuple(
        LevelSpec(name, plate.path, data_at(name), graph.children(name), plate.size_range[1],
                  window=config.ordered_window if plate.ordered else 1)
        for name, plate in graph.plates.items()
    )
    factorization = () if factorization is None else factorization
    dims = {f.name: factor_dim(f, graph) for f in factorization}
    factors = tuple(
        FactorSpec(f.name, f.level, f.path, dims[f.name], tuple((p, dims[p]) for p in f.parent_factors),
                   f.classes, f.markov)
        for f in factorization
    )
    return NetworkSpec(levels, data_at(None), graph.children(None), factors, config)


class SummarizedNetwork(Protocol):
    """What :func:`embed` and data standardization need of a network: the hierarchical summary.

    Both the posterior amortizer (:class:`AmortizerNetwork`) and the
    model-comparison classifier (:class:`amortize.model_classifier.ComparisonNetwork`)
    hold one, made by :func:`summary_networks` and :func:`data_standardization`.

    Attributes
    ----------
    summaries : nnx.Dict of plate → LevelSummary
    root : MLP
    data_loc, data_scale : nnx.Dict of data site → Standardization ``(features,)``
    """

    summaries: nnx.Dict
    root: MLP
    data_loc: nnx.Dict
    data_scale: nnx.Dict


class Standardization(nnx.Variable):
    """Fixed location/scale of an input or target (set before training, never optimized)."""


class AmortizerNetwork(nnx.Module):
    """All networks of one compiled program.

    Attributes
    ----------
    summaries : dict of plate → LevelSummary
    root : MLP
        Encodes the global data and the pooled top-level summaries into the
        embedding the global factor conditions on.
    flows : dict of factor → ConditionalFlow
    classifiers : dict of factor → ConditionalClassifier or SequenceClassifier
        One per discrete latent (mixture indicator) or hidden Markov chain.
        Each factor's network comes from its kind (:mod:`amortize.factors`),
        which also names the collection it sits in.
    data_loc, data_scale : per data site, ``(features,)`` standardization.
    latent_loc, latent_scale : per factor, ``(dim,)`` standardization of the
        unconstrained targets.
    """

    def __init__(self, spec: NetworkSpec, *, rngs: nnx.Rngs):
        c = spec.config
        self.summaries, self.root = summary_networks(spec, rngs=rngs)
        collections = {kind.collection: {} for kind in KINDS.values()}  # "flows", "classifiers"
        for factor in spec.factors:
            context_dims = (c.embed_dim, *(d for _, d in factor.parent_factors))
            kind = kind_of(factor)
            collections[kind.collection][factor.name] = kind.network(factor, c, context_dims, rngs=rngs)
        for name, modules in collections.items():
            setattr(self, name, nnx.Dict(modules))
        self.data_loc, self.data_scale = data_standardization(spec)
        self.latent_loc = nnx.Dict({f.name: Standardization(jnp.zeros(f.dim)) for f in spec.factors})
        self.latent_scale = nnx.Dict({f.name: Standardization(jnp.ones(f.dim)) for f in spec.factors})


def summary_networks(spec: NetworkSpec, *, rngs: nnx.Rngs) -> tuple[nnx.Dict, MLP]:
    """The hierarchical summary of all data: one :class:`LevelSummary` per plate and the root encoder.

    Returns
    -------
    summaries : nnx.Dict of plate → LevelSummary
    root : MLP
        Maps the global data and the pooled top-level summaries to the global
        embedding ``(B, embed_dim)``.
    """
    c = spec.config
    common = dict(activation=c.activation, rngs=rngs)
    summaries = {}
    for level in reversed(spec.levels):  # children first: their output widths are inputs here
        in_features = level.input_features + sum(
            summaries[child].out_features for child in level.children)
        summaries[level.name] = LevelSummary(
            in_features, embed_dim=c.embed_dim, out_dim=c.pooled_dim, width=c.summary_width,
            depth=c.summary_depth, kind=c.summary, heads=c.attention_heads,
            max_size=level.max_size, data_features=level.data_features, extremes=c.extremes,
            quantiles=level_quantiles(spec, level.name), **common)
    root_in = sum(f for _, f in spec.root_data) + sum(summaries[p].out_features for p in spec.top_plates)
    root = MLP((max(root_in, 1), *(c.summary_width,) * c.summary_depth, c.embed_dim), **common)
    return nnx.Dict({level.name: summaries[level.name] for level in spec.levels}), root


def level_quantiles(spec: NetworkSpec, level: str) -> int:
    """Quantiles per own data feature that ``level``'s summary passes (see ``NetworkConfig.quantiles``)."""
    if spec.config.quantiles is not None:
        return spec.config.quantiles
    indicators = any(f.kind == "classifier" and f.level == level for f in spec.factors)
    return AUTO_QUANTILES if indicators else 0


def data_standardization(spec: NetworkSpec) -> tuple[nnx.Dict, nnx.Dict]:
    """Location and scale ``(features,)`` of every data site (identity until a pilot sets them)."""
    sites = dict(spec.root_data) | {n: f for lv in spec.levels for n, f in lv.data}
    return (nnx.Dict({n: Standardization(jnp.zeros(f)) for n, f in sites.items()}),
            nnx.Dict({n: Standardization(jnp.ones(f)) for n, f in sites.items()}))


def _standardized_data(net: SummarizedNetwork, name: str, value: jax.Array) -> jax.Array:
    return (value - net.data_loc[name][...]) / net.data_scale[name][...]


def packable_levels(spec: NetworkSpec) -> tuple[str, ...]:
    """Levels whose summaries can run packed (:mod:`amortize.networks.packing`): no latent lives there
    (their instance embeddings condition nothing), they are sets (not ordered), and the summary is a deepset."""
    if spec.config.summary != "deepset":
        return ()
    occupied = {f.level for f in spec.factors}
    return tuple(lv.name for lv in spec.levels if lv.name not in occupied and not lv.ordered)


def embed(net: SummarizedNetwork, spec: NetworkSpec, data: dict, masks: dict,
          packing: dict | None = None) -> dict[str, jax.Array]:
    """Data → embeddings, innermost levels first.

    Parameters
    ----------
    data : dict of site → ``(B, *plates, features)``
    masks : dict of plate → ``(B, *plates)``
    packing : dict of plate → :class:`amortize.networks.packing.Packing`, optional
        Levels (of :func:`packable_levels`) whose instance encoder and pooling
        run on their real instances only; the same result up to the order of
        floating-point sums, without the work on padding.

    Returns
    -------
    dict
        ``"global"`` → ``(B, embed_dim)`` and, per plate that is not packed,
        instance embeddings ``(B, *plates, embed_dim)``.
    """
    embeddings, pooled = {}, {}
    packing = packing or {}
    batch = next(iter(masks.values())).shape[0] if masks else next(iter(data.values())).shape[0]
    for level in reversed(spec.levels):
        parts = [_standardized_data(net, n, data[n]) for n, _ in level.data]
        if level.ordered and parts:
            parts = _causal_window(parts, masks[level.name], level.window)
        parts += [pooled[child] for child in level.children]
        shape = masks[level.name].shape
        inputs = jnp.concatenate(parts, axis=-1) if parts else jnp.zeros(shape + (0,))
        summary = net.summaries[level.name]
        if level.name in packing:
            rows = packing[level.name].gather(inputs)
            sets = summary.pool(rows, summary.embed(rows), packing[level.name].sets)
            pooled[level.name] = sets.reshape(shape[:-1] + sets.shape[-1:])
            continue
        embeddings[level.name] = summary.embed(inputs)
        pooled[level.name] = summary.pool(inputs, embeddings[level.name], masks[level.name])
    parts = [_standardized_data(net, n, data[n]) for n, _ in spec.root_data]
    parts += [pooled[p] for p in spec.top_plates]
    inputs = jnp.concatenate(parts, axis=-1) if parts else jnp.ones((batch, 1))
    embeddings["global"] = net.root(inputs)
    return embeddings


def _causal_window(parts: list, mask: jax.Array, window: int) -> list:
    """An ordered level's inputs at step t: its data at t, t - 1, …, t - window + 1, and which lags exist.

    ``parts`` are ``(B, *plates, T, f)`` and ``mask (B, *plates, T)`` marks the
    real steps, a prefix of each series. Every step's embedding then sees the
    transitions into it (a causal convolution of width ``window``), and the
    level's pooled moments and correlations include those between steps: for
    an AR(1) series with covariates and ``window=2``, the sufficient
    statistics of its regression of y_t on y_(t-1) and the covariates. Lags
    before the first step are zeros with indicator 0.

    Returns
    -------
    list
        ``[current, lag 1, …, lag window-1]`` (each ``(B, *plates, T, f)``), then
        the indicators ``(B, *plates, T, window - 1)``.
    """
    current = jnp.concatenate(parts, axis=-1)
    steps = current.shape[-2]
    lags, exists = [current], []
    for lag in range(1, window):
        pad = [(0, 0)] * (current.ndim - 2) + [(lag, 0), (0, 0)]
        lags.append(jnp.pad(current, pad)[..., :steps, :])
        exists.append(jnp.pad(mask, pad[:-1])[..., :steps])
    return lags + [jnp.stack(exists, axis=-1).astype(current.dtype)]


def _context(embedding: jax.Array, factor: FactorSpec, values: dict, spec: NetworkSpec) -> list:
    """A factor's context parts: its level's embedding and each conditioning factor's latents.

    ``embedding`` is ``(*lead, *plates, embed_dim)``; each parent factor's
    standardized value is ``(*lead, *its_plates, dim)`` and gets singleton
    axes for the plates below it, so the parts broadcast against each other.
    """
    parts = [embedding]
    paths = {f.name: f.path for f in spec.factors}
    for parent, _ in factor.parent_factors:
        value = values[parent]
        extra = len(factor.path) - len(paths[parent])
        parts.append(value.reshape(value.shape[:-1] + (1,) * extra + value.shape[-1:]))
    return parts


def _instance_mask(masks: dict, factor: FactorSpec, batch: int) -> jax.Array:
    return masks[factor.level] if factor.level else jnp.ones((batch,), bool)


def factor_network(net: AmortizerNetwork, factor: FactorSpec) -> nnx.Module:
    """The network of one factor (in the collection its kind names)."""
    return getattr(net, kind_of(factor).collection)[factor.name]


def log_prob(net: AmortizerNetwork, spec: NetworkSpec, latents: dict, data: dict,
             masks: dict, per_instance: bool = False, packing: dict | None = None) -> dict[str, jax.Array]:
    """log q of the simulated latents, per factor, summed over instances.

    Parameters
    ----------
    latents : dict of factor → unconstrained ``(B, *plates, dim)``
    data, masks : as in :func:`embed`.
    per_instance : bool
        Return every instance's term ``(B, *plates)`` (zero where masked out)
        instead of their sum (not for Markov chains, whose log q is the chain's).
    packing : dict, optional
        Packed levels, as in :func:`embed`.

    Returns
    -------
    dict of factor → ``(B,)``
        Log density in standardized coordinates (the standardization's constant
        Jacobian is left out; it does not change the gradients).
    """
    embeddings = embed(net, spec, data, masks, packing)
    standardized = {
        f.name: (latents[f.name] - net.latent_loc[f.name][...]) / net.latent_scale[f.name][...]
        for f in spec.factors
    }
    out = {}
    for factor in spec.factors:
        context = _context(embeddings[factor.level or "global"], factor, standardized, spec)
        lp = kind_of(factor).log_prob(factor_network(net, factor), factor, latents[factor.name],
                                      standardized[factor.name], context,
                                      masks[factor.level] if factor.level else None)
        masked = jnp.where(_instance_mask(masks, factor, lp.shape[0]), lp, 0.0)
        out[factor.name] = masked if per_instance else jnp.sum(masked.reshape(lp.shape[0], -1), axis=1)
    return out


class LatentDraws(NamedTuple):
    """One ancestral pass: draws, their log density under q, and the classifiers' probabilities.

    Attributes
    ----------
    values : dict of factor → unconstrained draws ``(B, S, *plates, dim)``
        A classifier's draw is its class index, as a float; padded instances
        are drawn too (callers drop them by mask).
    log_q : dict of factor → ``(B, S, *plates)``
        log q of each instance's draw in unconstrained coordinates (the
        standardization's Jacobian included). For a Markov chain the whole
        chain's log q sits at its first step, zeros elsewhere, so a sum over
        the steps is the chain's. Empty unless asked for; a fixed factor has none.
    probabilities : dict of group → {factor: ``(B, S, *plates, classes)``}
        ``"indicator_probabilities"``: q(z = k | draw, data) per classifier
        factor (for a Markov chain, the smoothed marginals
        q(z_t = k | draw, whole series)); ``"indicator_filtered_probabilities"``:
        a chain's filtered marginals q(z_t = k | draw, series up to t).
    """

    values: dict
    log_q: dict
    probabilities: dict


def draw_latents(net: AmortizerNetwork, spec: NetworkSpec, key: jax.Array, data: dict, masks: dict,
                 num_samples: int, *, fixed: dict | None = None, log_q: bool = False,
                 defensive: tuple[float, float] | None = None, only: tuple[str, ...] | None = None) -> LatentDraws:
    """Ancestral pass through the factors: flows first, then the indicators' classifiers.

    Parameters
    ----------
    key : PRNG key
    data, masks : as in :func:`embed`.
    num_samples : int
        Draws ``S`` per data set.
    fixed : dict of factor → unconstrained ``(B, S, *plates, dim)``, optional
        Factors whose values are given rather than drawn: the later factors
        condition on them (importance sampling draws new local parameters
        given the same global draw this way).
    log_q : bool
        Also return each drawn instance's log density.
    defensive : (alpha, c), optional
        Draw every drawn factor from a defensive mixture instead of q: a
        flow's base normal is widened ``c`` times with probability ``alpha``
        (see :meth:`ConditionalFlow.sample_and_log_prob`), and a classifier
        draws uniformly with probability ``alpha``. ``log_q`` is then the
        mixture's: importance sampling with it has bounded weights where q's
        tails are too light. Markov chains are drawn from q.
    only : tuple of factor names, optional
        Draw these factors only (they must not condition on the others: e.g.
        the global factors, which come first in the ancestral order). Leave-one-group-out
        CV needs the globals of many data sets, not every group's locals.

    Returns
    -------
    LatentDraws
    """
    fixed = fixed or {}
    embeddings = embed(net, spec, data, masks)
    keys = jax.random.split(key, len(spec.factors))
    standardized, out, densities, probabilities = {}, {}, {}, {}
    for k, factor in zip(keys, spec.factors):
        if only is not None and factor.name not in only:
            continue
        loc, scale = net.latent_loc[factor.name][...], net.latent_scale[factor.name][...]
        if factor.name in fixed:
            out[factor.name] = fixed[factor.name]
            standardized[factor.name] = (fixed[factor.name] - loc) / scale
            continue
        emb = embeddings[factor.level or "global"][:, None]  # (B, 1, *plates, E): shared by draws
        context = _context(emb, factor, standardized, spec)
        kind = kind_of(factor)
        drawn = kind.draw(factor_network(net, factor), factor, k, context,
                          masks[factor.level] if factor.level else None,
                          (emb.shape[0], num_samples) + emb.shape[2:-1], log_q=log_q, defensive=defensive)
        for group, values in drawn.probabilities.items():
            probabilities.setdefault(group, {})[factor.name] = values
        standardized[factor.name] = drawn.value
        if kind.standardized:
            out[factor.name] = drawn.value * scale + loc
            if log_q:
                densities[factor.name] = drawn.log_q - jnp.sum(jnp.log(scale))
        else:
            out[factor.name] = drawn.value
            if log_q:
                densities[factor.name] = drawn.log_q
    return LatentDraws(out, densities, probabilities)
