"""Factorization → networks: one summary network per level, one flow per factor.

The assembled :class:`AmortizerNetwork` is an ``nnx.Module``; the functions
:func:`embed`, :func:`log_prob` and :func:`draw_latents` are pure functions of
the network, its static :class:`NetworkSpec` and arrays, so the training step
and the sampler can be jitted at the boundary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from amortize.graph import Factorization, ModelGraph
from amortize.networks import MLP, ConditionalClassifier, ConditionalFlow, LevelSummary, SequenceClassifier
from amortize.networks.mlp import ACTIVATIONS
from amortize.simulate import factor_dim

__all__ = [
    "NetworkConfig",
    "NetworkSpec",
    "AmortizerNetwork",
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


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Sizes and kinds of the networks (defaults suit most models on a CPU).

    Parameters
    ----------
    summary : {"deepset", "set_transformer"}
        Pooling over the instances of each plate.
    summary_width : int
        Hidden width of the summary networks.
    summary_depth : int
        Hidden layers of each summary MLP.
    embed_dim : int
        Width of an instance embedding (the data summary a local factor sees).
    pooled_dim : int
        Width of a plate's pooled summary, handed to the enclosing level.
    attention_heads : int
        Heads of the set transformer.
    flow : {"spline", "affine"}
        Element-wise bijector of the coupling layers.
    flow_layers : int
        Coupling layers per flow.
    flow_hidden : int
        Hidden width of each coupling conditioner.
    flow_depth : int
        Hidden layers of each conditioner after the context projection (0 is
        fastest: one hidden layer in all, shared with the context projection).
    spline_bins : int
    spline_bound : float
        Splines act on [-bound, bound] in standardized units (linear outside).
    activation : {"gelu", "silu", "relu", "tanh"}
    ordered_window : int
        Steps each embedding of an ordered (time) level sees: the current
        step and the ``ordered_window - 1`` steps before it, a causal
        convolution of that width, followed by the level's masked pooling. 2
        suits first-order (Markov) series such as an AR(1) response, whose
        likelihood is a product over consecutive pairs; an AR(p) response
        needs at least p + 1.
    extremes : bool
        Summaries also pool extremes: the maximum of the instance embeddings
        and the minimum and maximum of each raw input feature (off by
        default). Turn it on when a parameter bounds the data, e.g. a
        diffusion model's non-decision time, which lies below every response
        time of its group: a mean-pooled summary can only approximate a
        minimum.
    local_flow, local_flow_hidden, local_flow_depth : optional
        Kind, width and depth of the flows of local factors (those inside a
        plate), when they should differ from the global ones (default: the
        same). Sampling cost is dominated by local flows (one pass per draw
        and instance), so a lean local flow buys latency where it costs least.
    scalar_local_hidden : int or None
        Largest width of the flows of one-dimensional local factors (a scalar
        group effect) where ``local_flow_hidden`` is not given (narrower
        ``flow_hidden`` stays as it is): such a flow is one
        spline whose 25 parameters depend on the context alone, and 32 units
        learn it as well as 64 (measured at equal steps: conjugate two-level
        model, worst mean error 0.115 vs 0.147 exact sds; hierarchical
        Poisson, local relative ESS 0.95 vs 0.96) at half the latency (1000
        draws of 50 groups: 43 → 12 ms jitted). ``None``: ``flow_hidden``, as
        before (archives saved before this setting existed load with it).
    """

    summary: str = "deepset"
    summary_width: int = 64
    summary_depth: int = 2
    embed_dim: int = 32
    pooled_dim: int = 32
    attention_heads: int = 4
    flow: str = "spline"
    flow_layers: int = 4
    flow_hidden: int = 64
    flow_depth: int = 1
    spline_bins: int = 8
    spline_bound: float = 5.0
    activation: str = "silu"
    ordered_window: int = 2
    extremes: bool = False
    local_flow: str | None = None
    local_flow_hidden: int | None = None
    local_flow_depth: int | None = None
    scalar_local_hidden: int | None = 32

    def __post_init__(self):
        if self.summary not in ("deepset", "set_transformer"):
            raise ValueError(f"NetworkConfig.summary={self.summary!r}; use 'deepset' or 'set_transformer'.")
        for name in ("flow", "local_flow"):
            value = getattr(self, name)
            if value not in ("spline", "affine") and not (name == "local_flow" and value is None):
                raise ValueError(f"NetworkConfig.{name}={value!r}; use 'spline' or 'affine'.")
        if self.local_flow_hidden is not None and self.local_flow_hidden < 1:
            raise ValueError(f"NetworkConfig.local_flow_hidden must be positive; got {self.local_flow_hidden}.")
        if self.scalar_local_hidden is not None and self.scalar_local_hidden < 1:
            raise ValueError(f"NetworkConfig.scalar_local_hidden must be positive; got {self.scalar_local_hidden}.")
        if self.local_flow_depth is not None and self.local_flow_depth < 0:
            raise ValueError(f"NetworkConfig.local_flow_depth must be >= 0; got {self.local_flow_depth}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"NetworkConfig.activation={self.activation!r}; use one of {sorted(ACTIVATIONS)}.")
        for name in ("summary_width", "summary_depth", "embed_dim", "pooled_dim",
                     "attention_heads", "flow_layers", "flow_hidden", "spline_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"NetworkConfig.{name} must be a positive integer; got {getattr(self, name)}.")
        if self.summary == "set_transformer" and self.summary_width % self.attention_heads:
            raise ValueError(
                f"NetworkConfig.summary_width={self.summary_width} must be divisible by "
                f"attention_heads={self.attention_heads}."
            )
        if self.flow_depth < 0:
            raise ValueError(f"NetworkConfig.flow_depth must be >= 0; got {self.flow_depth}.")
        if int(self.ordered_window) < 2:
            raise ValueError(f"NetworkConfig.ordered_window must be at least 2 (the current step and its "
                             f"predecessor); got {self.ordered_window}.")
        if self.spline_bound <= 0:
            raise ValueError(f"NetworkConfig.spline_bound must be positive; got {self.spline_bound}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def flow_settings(self, local: bool, dim: int | None = None) -> tuple[str, int, int]:
        """(kind, hidden, depth) of a global (``local=False``) or local factor's flow of ``dim`` dimensions."""
        if not local:
            return self.flow, self.flow_hidden, self.flow_depth
        hidden = self.local_flow_hidden
        if hidden is None:
            hidden = self.flow_hidden
            if dim == 1 and self.scalar_local_hidden:
                hidden = min(hidden, self.scalar_local_hidden)
        return (self.local_flow or self.flow, hidden,
                self.flow_depth if self.local_flow_depth is None else self.local_flow_depth)

    @classmethod
    def fast(cls, **overrides) -> "NetworkConfig":
        """Latency-first preset: lean affine flows for local factors, splines for global ones.

        Sampling a data set runs the local flow once per draw and instance
        (50,000 passes for 1000 draws of 50 groups) and the global flow once per
        draw, so the local flows set the latency: ``local_flow="affine",
        local_flow_hidden=32, local_flow_depth=0``, and ReLU activations (no
        exponentials on those 50,000 passes). See docs/performance.md for the
        measured figures. Affine coupling is less flexible than splines; check
        the local posteriors (SBC, :mod:`amortize.diagnostics`) before relying
        on it for strongly non-Gaussian group parameters.
        """
        return cls(**{"local_flow": "affine", "local_flow_hidden": 32, "local_flow_depth": 0,
                      "activation": "relu", **overrides})


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
    def is_classifier(self) -> bool:
        return self.classes is not None


@dataclass(frozen=True)
class NetworkSpec:
    """Static, hashable structure the pure network functions need."""

    levels: tuple[LevelSpec, ...]  # parents before children
    root_data: tuple[tuple[str, int], ...]
    top_plates: tuple[str, ...]
    factors: tuple[FactorSpec, ...]  # ancestral order
    config: NetworkConfig


def network_spec(graph: ModelGraph, factorization: Factorization, config: NetworkConfig) -> NetworkSpec:
    """Read off the structure of the networks from the factorization."""
    def data_at(level):
        return tuple((n, graph.sites[n].event_size) for n in graph.sites_at(level, "data"))

    levels = tuple(
        LevelSpec(name, plate.path, data_at(name), graph.children(name), plate.size_range[1],
                  window=config.ordered_window if plate.ordered else 1)
        for name, plate in graph.plates.items()
    )
    dims = {f.name: factor_dim(f, graph) for f in factorization}
    factors = tuple(
        FactorSpec(f.name, f.level, f.path, dims[f.name], tuple((p, dims[p]) for p in f.parent_factors),
                   f.classes, f.markov)
        for f in factorization
    )
    return NetworkSpec(levels, data_at(None), graph.children(None), factors, config)


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
    classifiers : dict of factor → ConditionalClassifier
        One per discrete latent (mixture indicator), two hidden layers of
        ``summary_width``.
    data_loc, data_scale : per data site, ``(features,)`` standardization.
    latent_loc, latent_scale : per factor, ``(dim,)`` standardization of the
        unconstrained targets.
    """

    def __init__(self, spec: NetworkSpec, *, rngs: nnx.Rngs):
        c = spec.config
        common = dict(activation=c.activation, rngs=rngs)
        self.summaries, self.root = summary_networks(spec, rngs=rngs)
        flows, classifiers = {}, {}
        for factor in spec.factors:
            context_dims = (c.embed_dim, *(d for _, d in factor.parent_factors))
            if factor.markov:
                classifiers[factor.name] = SequenceClassifier(
                    factor.classes, context_dims, hidden=c.summary_width, **common)
                continue
            if factor.is_classifier:
                classifiers[factor.name] = ConditionalClassifier(
                    factor.classes, context_dims, hidden=c.summary_width, depth=2, **common)
                continue
            kind, hidden, depth = c.flow_settings(local=factor.level is not None, dim=factor.dim)
            flows[factor.name] = ConditionalFlow(
                factor.dim, context_dims, layers=c.flow_layers, hidden=hidden, depth=depth, kind=kind,
                bins=c.spline_bins, bound=c.spline_bound, **common)
        self.flows = nnx.Dict(flows)
        self.classifiers = nnx.Dict(classifiers)
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
            max_size=level.max_size, data_features=level.data_features, extremes=c.extremes, **common)
    root_in = sum(f for _, f in spec.root_data) + sum(summaries[p].out_features for p in spec.top_plates)
    root = MLP((max(root_in, 1), *(c.summary_width,) * c.summary_depth, c.embed_dim), **common)
    return nnx.Dict({level.name: summaries[level.name] for level in spec.levels}), root


def data_standardization(spec: NetworkSpec) -> tuple[nnx.Dict, nnx.Dict]:
    """Location and scale ``(features,)`` of every data site (identity until a pilot sets them)."""
    sites = dict(spec.root_data) | {n: f for lv in spec.levels for n, f in lv.data}
    return (nnx.Dict({n: Standardization(jnp.zeros(f)) for n, f in sites.items()}),
            nnx.Dict({n: Standardization(jnp.ones(f)) for n, f in sites.items()}))


def _standardized_data(net: AmortizerNetwork, name: str, value: jax.Array) -> jax.Array:
    return (value - net.data_loc[name][...]) / net.data_scale[name][...]


def packable_levels(spec: NetworkSpec) -> tuple[str, ...]:
    """Levels whose summaries can run packed (:mod:`amortize.networks.packing`): no latent lives there
    (their instance embeddings condition nothing), they are sets (not ordered), and the summary is a deepset."""
    if spec.config.summary != "deepset":
        return ()
    occupied = {f.level for f in spec.factors}
    return tuple(lv.name for lv in spec.levels if lv.name not in occupied and not lv.ordered)


def embed(net: AmortizerNetwork, spec: NetworkSpec, data: dict, masks: dict,
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
        if factor.markov:
            lp = net.classifiers[factor.name].log_prob(latents[factor.name][..., 0], context, masks[factor.level])
        elif factor.is_classifier:
            lp = net.classifiers[factor.name].log_prob(latents[factor.name][..., 0], context)
        else:
            flow = net.flows[factor.name]
            lp = flow.log_prob(standardized[factor.name], flow.project_context(context))
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
        if factor.markov:
            mask = masks[factor.level][:, None]  # (B, 1, *plates, T): shared by draws
            classifier = net.classifiers[factor.name]
            states, filtered, smoothed = classifier.sample(k, context, mask)
            out[factor.name] = states.astype(jnp.float32)[..., None]
            if log_q:
                densities[factor.name] = classifier.log_prob(states, context, mask)
            probabilities.setdefault("indicator_probabilities", {})[factor.name] = smoothed
            probabilities.setdefault("indicator_filtered_probabilities", {})[factor.name] = filtered
            continue
        if factor.is_classifier:
            logits = net.classifiers[factor.name].logits(context)
            logits = jnp.broadcast_to(logits, (emb.shape[0], num_samples) + logits.shape[2:])
            log_probs = jax.nn.log_softmax(logits, axis=-1)
            if defensive:
                alpha = defensive[0]
                log_probs = jnp.logaddexp(math.log1p(-alpha) + log_probs, math.log(alpha / factor.classes))
            index = jax.random.categorical(k, log_probs)
            out[factor.name] = index.astype(jnp.float32)[..., None]
            if log_q:
                densities[factor.name] = jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0]
            probabilities.setdefault("indicator_probabilities", {})[factor.name] = jax.nn.softmax(
                logits, axis=-1)
            continue
        flow = net.flows[factor.name]
        projected = flow.project_context(context)
        shape = (emb.shape[0], num_samples) + emb.shape[2:-1] + projected.shape[-2:]
        projected = jnp.broadcast_to(projected, shape)
        if log_q:
            draw, lq = flow.sample_and_log_prob(k, projected, defensive)
            densities[factor.name] = lq - jnp.sum(jnp.log(scale))
        else:
            draw = flow.sample(k, projected)
        standardized[factor.name] = draw
        out[factor.name] = draw * scale + loc
    return LatentDraws(out, densities, probabilities)
