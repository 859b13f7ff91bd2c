"""Self-consistency: the program's own density as a training signal (Schmitt et al., ICML 2024).

For the exact posterior, Bayes' theorem read backwards gives the same number
at every parameter value:

    log p(u) + log p(y | u) - log p(u | y) = log p(y)      for every u.

So for an approximation q, the variance over draws u_1..u_K of the log
importance weight ``log p(u_k, y) - log q(u_k | y)`` is zero exactly when q is
the posterior (on the draws' support) and positive otherwise. Added to the
negative log posterior loss, it pulls q toward the posterior wherever the
program's density can be evaluated, with no extra simulation. Each data set's
variance v enters as log(1 + v): the paper's v near the posterior, and a
bounded pull far from it, where the variance for a real multilevel data set
reaches 1e9 early in training.

As in the paper, the draws are K - 1 from q itself (held fixed: the gradient
flows through log q at the draws, not through the draws) plus the latents the
data were simulated with.

Multilevel programs (per factor). The joint log weight of a program with G
groups sums G local errors, so its variance grows with G. Given the globals,
every group's local posterior is low-dimensional and the same identity holds
per group: ``log p(u_j, y_j | g) - log q(u_j | g, y) = log p(y_j | g)`` for
every local draw u_j. The *local* term draws L locals per group given the
simulated globals and takes each group's variance over them; the *joint* term
is the variance of the whole log weight over K joint draws (it is what trains
the global factor). Both are reported (``sc_joint``, ``sc_local``).

Mixtures. Where every block holds one mixture indicator (Old Faithful's
eruptions), the joint term sums the indicators out exactly
(:func:`enumerated_log_weights`): the weight of the outer draws alone,
``log p(g) + Σ_j log Σ_c p(z_j = c, y_j | g) - log q(g | y)``. With drawn
indicators the variance would be dominated by hundreds of discrete draws and
say little about q(g | y). The local term still trains the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from amortize.build import NetworkSpec, draw_latents, log_prob
from amortize.errors import RefineError
from amortize.factors import kind_of
from amortize.graph import Factorization, ModelGraph
from amortize.refine.density import block_plates, log_density_terms, split_by_block
from amortize.refine.weights import enumerated_classes

__all__ = ["SelfConsistency", "block_log_density", "block_log_weights", "enumerated_log_weights",
           "self_consistency_loss"]


@dataclass(frozen=True, eq=False)  # may hold a data set: compared by identity
class SelfConsistency:
    """Settings of the self-consistency term (``fit(self_consistency=...)``).

    Parameters
    ----------
    weight : float
        Multiplies the simulations' term once it is fully on (the paper's λ; default 1).
    draws : int
        K: joint draws per simulated data set (K - 1 from q plus the simulated
        latents).
    local_draws : int
        L: local draws per group given the simulated globals (multilevel
        programs only; 0 turns the local term off).
    start : float
        Share of the run before the term is switched on (a warm-up: q must
        first be roughly right, or the variances are huge and uninformative).
    ramp : float
        Share of the run over which its weight then rises linearly to ``weight``.
    data : mapping of site → values, optional
        A real data set (any form ``sample`` takes) whose term is added at
        every step: its K draws come from q alone (there are no simulated
        latents), its local term holds the globals at one of them. This needs
        no simulation and pulls q toward the exact posterior of these data.
    index : mapping of plate → labels, optional
        Long format for ``data``, as in ``sample``.
    data_weight : float
        Multiplies the real data set's term (default 100: one data set
        against a batch of simulations whose negative log posterior is in the
        hundreds; measured on radon in docs/design.md).
    simulations : bool
        Apply the term to every simulated batch (the paper's method). With
        ``data`` given and ``simulations=False``, only the real data set's
        term is added: much cheaper per step.
    """

    weight: float = 1.0
    draws: int = 8
    local_draws: int = 8
    start: float = 0.2
    ramp: float = 0.1
    data: Mapping[str, Any] | None = None
    index: Mapping[str, Any] | None = None
    data_weight: float = 100.0
    simulations: bool = True

    def __post_init__(self):
        if not (self.weight > 0 and self.data_weight > 0):
            raise RefineError(f"SelfConsistency.weight and data_weight must be positive; got {self.weight} and "
                              f"{self.data_weight}.")
        if int(self.draws) < 2 or int(self.local_draws) < 0 or int(self.local_draws) == 1:
            raise RefineError(f"SelfConsistency needs draws >= 2 and local_draws 0 or >= 2 (a variance needs "
                              f"two draws); got draws={self.draws}, local_draws={self.local_draws}.")
        if not self.simulations and self.data is None:
            raise RefineError("SelfConsistency(simulations=False) needs data=: there would be nothing to apply "
                              "the term to.")
        if not (0.0 <= self.start < 1.0 and self.ramp >= 0.0):
            raise RefineError(f"SelfConsistency.start must lie in [0, 1) and ramp be >= 0; got start="
                              f"{self.start}, ramp={self.ramp}.")

    def weight_at(self, fraction):
        """The share of its weight a term has at ``fraction`` of the run: 0 before ``start``, then a linear
        rise to 1 over ``ramp``."""
        if self.ramp == 0:
            return jnp.where(fraction >= self.start, 1.0, 0.0)
        return jnp.clip((fraction - self.start) / self.ramp, 0.0, 1.0)


def block_log_density(graph: ModelGraph, factorization: Factorization, values: dict, data: dict,
                      masks: dict) -> dict:
    """The program's log joint density at draws, split into the outer part and one part per block instance.

    Parameters
    ----------
    values : dict of factor → unconstrained draws ``(B, K, *plates, dim)``
    data : dict of data site → ``(B, *plates, features)`` (a :class:`~amortize.simulate.Simulation`'s)
    masks : dict of plate → bool ``(B, *plates)``

    Returns
    -------
    dict
        ``"outer"`` → ``(B, K)`` and, per block plate (:func:`~amortize.refine.density.block_plates`),
        ``(B, K, n_plate)``: log p of the draws (Jacobians included), padded instances left out.
    """
    blocks = block_plates(graph, factorization)
    sizes = {p: masks[p].shape[-1] for p in graph.plates}
    terms_of = log_density_terms(graph, factorization, sizes)
    site_paths = {n: s.path for n, s in graph.sites.items()}
    events = {n: graph.sites[n].event_shape for n in graph.data_names}

    def one(values, data, masks):
        data = {n: v.reshape(v.shape[:-1] + tuple(events[n])) for n, v in data.items()}
        return split_by_block(terms_of(values, data, masks), site_paths, masks, blocks)

    return jax.vmap(jax.vmap(one, in_axes=(0, None, None)))(values, data, masks)


def _split_log_q(factorization: Factorization, log_q: dict, masks: dict, blocks: tuple[str, ...]) -> dict:
    factor_paths = {f.name: f.path for f in factorization}
    lead_masks = {p: m[:, None] for p, m in masks.items()}  # broadcast over K
    return split_by_block(log_q, factor_paths, lead_masks, blocks)


def block_log_weights(graph: ModelGraph, factorization: Factorization, values: dict, data: dict, masks: dict,
                      log_q: dict) -> dict:
    """Log importance weights of draws, split into the outer part and one part per block instance.

    Parameters
    ----------
    values, data, masks
        As in :func:`block_log_density`.
    log_q : dict of factor → ``(B, K, *plates)``
        Each instance's log q at its draw (zero where masked out).

    Returns
    -------
    dict
        ``"outer"`` → ``(B, K)`` and, per block plate, ``(B, K, n_plate)``: log p minus log q of the draws,
        padded instances left out.
    """
    density = block_log_density(graph, factorization, values, data, masks)
    q = _split_log_q(factorization, log_q, masks, block_plates(graph, factorization))
    return {part: density[part] - q[part] for part in density}


def enumerated_log_weights(graph: ModelGraph, factorization: Factorization, values: dict, data: dict,
                           masks: dict, log_q: dict, classes: int):
    """Joint log weights of the outer draws with every block's mixture indicator summed out: ``(B, K)``.

    ``log p(g) + Σ_j log Σ_c p(z_j = c, y_j | g) - log q(g | y)``, for programs whose blocks hold one
    indicator each (:func:`~amortize.refine.weights.enumerated_classes` gives ``classes``). The drawn
    indicators in ``values`` are ignored, and so is their log q: the weight is that of the outer
    latents alone, the same as the program with the indicators summed out would give. Arguments as in
    :func:`block_log_weights`.
    """
    blocks = block_plates(graph, factorization)
    inner = {f.name for f in factorization if f.path and f.path[0] in blocks}
    per_class = [block_log_density(graph, factorization,
                                   {f: jnp.full_like(v, c) if f in inner else v for f, v in values.items()},
                                   data, masks) for c in range(classes)]
    total = per_class[0]["outer"] - _split_log_q(factorization, log_q, masks, blocks)["outer"]
    for p in blocks:
        summed = jax.nn.logsumexp(jnp.stack([d[p] for d in per_class]), axis=0)  # (B, K, n_plate)
        total = total + jnp.where(masks[p][:, None], summed, 0.0).sum(-1)
    return total


def self_consistency_loss(graph: ModelGraph, factorization: Factorization, spec: NetworkSpec,
                          settings: SelfConsistency, observed=None):
    """``(net, sim, key, fraction) -> (value, parts)``: the weighted self-consistency term of a batch.

    Parameters
    ----------
    observed : PreparedData, optional
        A real data set: its term (K draws from q, no simulated latents to
        add; the local term given one drawn global) is added to the batch's.

    ``parts``: ``sc_joint`` (mean over valid data sets of the variance of the
    joint log weight over K draws), ``sc_local`` (mean over valid data sets
    and real groups of the variance over L local draws given the simulated
    globals; 0 without groups), ``sc_observed`` (the observed data set's
    joint + local term; 0 without one) and ``sc_weight`` (the share of the
    weights on at this step: 0 before ``start``, 1 after the ramp).

    Raises
    ------
    RefineError
        The program has a hidden Markov chain (its log q is the chain's, not
        per step; not supported here).
    """
    for factor in factorization:
        if not kind_of(factor).per_instance:
            raise RefineError(f"Self-consistency training does not support the hidden Markov chain "
                              f"`{factor.name}` (plate `{factor.level}`); train without self_consistency.")
    blocks = block_plates(graph, factorization)
    outer = [f.name for f in factorization if not (f.path and f.path[0] in blocks)]
    use_local = bool(blocks) and settings.local_draws >= 2 and len(outer) < len(factorization)
    # Blocks that hold one mixture indicator each: the joint term sums the indicators out, so its variance
    # is that of the outer latents' weights alone (drawn indicators would add the variance of hundreds of
    # discrete draws, which swamps it: docs/mixtures.md).
    classes = enumerated_classes(factorization, blocks)

    def log_q(net, values, data, masks):
        per_draw = lambda v: log_prob(net, spec, v, data, masks, per_instance=True)  # noqa: E731
        return jax.vmap(per_draw, in_axes=1, out_axes=1)(values)

    def variance(log_w, weights):
        """log(1 + variance) over axis 1, averaged with ``weights`` (shape of the rest); non-finite rows count as 0.

        Near the posterior log(1 + v) ≈ v, the paper's term; far from it the
        variances of a real multilevel data set reach 1e9 and would swamp the
        negative log posterior (and overflow float32), where log(1 + v) keeps
        the gradient's scale.
        """
        finite = jnp.all(jnp.isfinite(log_w), axis=1)
        var = jnp.log1p(jnp.var(jnp.where(finite[:, None], log_w, 0.0), axis=1))
        weights = weights & finite
        return jnp.sum(jnp.where(weights, var, 0.0)) / jnp.maximum(jnp.sum(weights), 1)

    def weights_of(net, values, data, masks):
        values = {f: jax.lax.stop_gradient(v) for f, v in values.items()}
        return block_log_weights(graph, factorization, values, data, masks, log_q(net, values, data, masks))

    def joint_term(net, key, data, masks, valid, truth=None):
        """Variance of the joint log weight over K draws (K - 1 and the simulated latents, if given)."""
        drawn = draw_latents(net, spec, key, data, masks, settings.draws - (truth is not None)).values
        if truth is not None:
            drawn = {f: jnp.concatenate([drawn[f], truth[f][:, None]], axis=1) for f in drawn}
        if classes is None:
            parts = weights_of(net, drawn, data, masks)
            total = parts["outer"] + sum(parts[p].sum(-1) for p in blocks)
        else:
            fixed = {f: jax.lax.stop_gradient(v) for f, v in drawn.items()}
            total = enumerated_log_weights(graph, factorization, fixed, data, masks, log_q(net, fixed, data, masks),
                                           classes)
        return variance(total, valid), drawn

    def local_term(net, key, data, masks, valid, globals_):
        """Mean over groups of the variance over L local draws given ``globals_`` ``(B, *plates, dim)``."""
        batch = valid.shape[0]
        fixed = {f: jnp.broadcast_to(globals_[f][:, None], (batch, settings.local_draws) + globals_[f].shape[1:])
                 for f in outer}
        drawn = draw_latents(net, spec, key, data, masks, settings.local_draws, fixed=fixed).values
        parts = weights_of(net, drawn, data, masks)
        return sum(variance(parts[p], masks[p] & valid[:, None]) for p in blocks) / len(blocks)

    def loss(net, sim, key, fraction):
        keys = jax.random.split(key, 4)
        joint, local = 0.0, 0.0
        if settings.simulations:
            joint, _ = joint_term(net, keys[0], sim.data, sim.masks, sim.valid, sim.latents)
            if use_local:
                local = local_term(net, keys[1], sim.data, sim.masks, sim.valid, sim.latents)
        on_data = 0.0
        if observed is not None:
            valid = jnp.ones((1,), bool)
            on_data, drawn = joint_term(net, keys[2], observed.data, observed.masks, valid)
            if use_local:
                first = {f: jax.lax.stop_gradient(drawn[f][:, 0]) for f in outer}
                on_data = on_data + local_term(net, keys[3], observed.data, observed.masks, valid, first)
        share = settings.weight_at(fraction)
        parts = {"sc_joint": jnp.asarray(joint), "sc_local": jnp.asarray(local), "sc_observed": jnp.asarray(on_data),
                 "sc_weight": share}
        return share * (settings.weight * (joint + local) + settings.data_weight * on_data), parts

    return loss
