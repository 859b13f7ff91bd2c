"""Conditional classifiers: q(z | context) over a finite set of classes (mixture indicators)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from amortize.networks.mlp import MLP

__all__ = ["ConditionalClassifier", "SequenceClassifier"]


def _concatenated(parts: list, lead: tuple[int, ...]) -> jax.Array:
    """Context parts broadcast to ``(*lead, ·)`` and joined along the last axis."""
    return jnp.concatenate([jnp.broadcast_to(p, lead + p.shape[-1:]) for p in parts], axis=-1)


class ConditionalClassifier(nnx.Module):
    """Logits of ``classes`` classes given a context (Kucharský & Bürkner 2025).

    Parameters
    ----------
    classes : int
    context_dims : tuple of int
        Widths of the context parts (the instance's summary embedding, then
        each conditioning factor's standardized latents).
    hidden : int
        Width of the hidden layers.
    depth : int
        Number of hidden layers.
    activation : str

    Notes
    -----
    The context parts may differ in their leading axes as long as they
    broadcast (e.g. an embedding shared by all posterior draws next to
    per-draw parameters); :meth:`logits` returns ``(*broadcast lead, classes)``.
    Weights are shared over every instance of the level.
    """

    def __init__(self, classes: int, context_dims: tuple[int, ...], *, hidden: int, depth: int,
                 activation: str, rngs: nnx.Rngs):
        self.classes = classes
        self.network = MLP((sum(context_dims), *(hidden,) * depth, classes), activation=activation, rngs=rngs)

    def logits(self, context: list) -> jax.Array:
        lead = jnp.broadcast_shapes(*(part.shape[:-1] for part in context))
        return self.network(_concatenated(context, lead))

    def log_prob(self, index: jax.Array, context: list) -> jax.Array:
        """log q(index | context): ``index (..., )`` integer classes → ``(...)``."""
        log_q = jax.nn.log_softmax(self.logits(context), axis=-1)
        return jnp.take_along_axis(log_q, index[..., None].astype(jnp.int32), axis=-1)[..., 0]


class SequenceClassifier(nnx.Module):
    """Discrete states along an ordered level (a hidden Markov chain): a learned linear-chain CRF.

    Given the conditioning latents θ and the data, the states' posterior is
    modelled as

        q(z_1:T | y, θ) ∝ exp(a(z_1) + Σ_t e_t(z_t) + Σ_(t>1) A(z_(t-1), z_t)),

    with per-step scores e_t = MLP(step embedding_t, θ) (the embedding sees
    the step's data and those before it in the level's causal window),
    initial scores a = MLP(θ) and transition scores A = MLP(θ). For a hidden
    Markov model whose emissions depend on the current (and earlier) data,
    the exact posterior is of this form, with e_t(k) = log p(y_t | z_t = k, y_(t-1), θ),
    A = log p(z_t | z_(t-1), θ) and a = log p(z_1 | θ): the family holds the
    truth, and training by the joint log likelihood of simulated chains
    (exact: the normalizer comes from the forward algorithm) recovers it.
    From the learned scores, the forward–backward algorithm gives

    * filtering, q(z_t | y_1:t, θ): the normalized forward messages (causal);
    * smoothing, q(z_t | y_1:T, θ): forward times backward messages;
    * joint draws of the whole chain by backward sampling: z_T from the
      last filter, then z_t ∝ filter_t(z_t) · exp A(z_t, z_(t+1)).

    Sequences are right-padded: ``mask (..., T)`` marks a prefix of real steps.
    """

    def __init__(self, classes: int, context_dims: tuple[int, ...], *, hidden: int, activation: str,
                 rngs: nnx.Rngs):
        self.classes = classes
        parameter_dims = sum(context_dims[1:])
        self.emission = MLP((sum(context_dims), hidden, hidden, classes), activation=activation, rngs=rngs)
        self.initial = MLP((max(parameter_dims, 1), hidden, classes), activation=activation, rngs=rngs)
        self.transition = MLP((max(parameter_dims, 1), hidden, classes * classes), activation=activation,
                              rngs=rngs)

    def scores(self, context: list, mask: jax.Array):
        """Initial ``(*lead, K)``, per-step ``(*lead, T, K)`` and transition ``(*lead, K, K)`` scores.

        ``context`` is ``[step embeddings (..., T, E), θ parts (..., 1, d)...]``,
        broadcasting to a common ``(*lead, T, ·)``.
        """
        lead = jnp.broadcast_shapes(*(part.shape[:-1] for part in context), mask.shape)
        emission = self.emission(_concatenated(context, lead))
        if len(context) > 1:  # θ parts carry a singleton step axis
            theta = _concatenated(context[1:], lead[:-1] + (1,))[..., 0, :]
        else:
            theta = jnp.zeros(lead[:-1] + (1,), emission.dtype)
        initial = jax.nn.log_softmax(self.initial(theta), axis=-1)
        transition = self.transition(theta).reshape(lead[:-1] + (self.classes, self.classes))
        return initial, emission, transition, jnp.broadcast_to(mask, lead)

    @staticmethod
    def _forward(initial, emission, transition, mask):
        """Log forward messages ``(*lead, T, K)`` (held constant past the end) and log normalizer ``(*lead,)``."""
        def step(carry, inputs):
            log_alpha, first = carry
            e_t, m_t = inputs
            moved = jax.nn.logsumexp(log_alpha[..., :, None] + transition, axis=-2)
            new = e_t + jnp.where(first[..., None], initial, moved)
            log_alpha = jnp.where(m_t[..., None], new, log_alpha)
            return (log_alpha, first & ~m_t), log_alpha

        lead = emission.shape[:-2]
        start = (jnp.zeros(lead + (emission.shape[-1],), emission.dtype), jnp.ones(lead, bool))
        (last, _), alphas = jax.lax.scan(step, start, (jnp.moveaxis(emission, -2, 0), jnp.moveaxis(mask, -1, 0)))
        return jnp.moveaxis(alphas, 0, -2), jax.nn.logsumexp(last, axis=-1)

    @staticmethod
    def _backward(emission, transition, mask):
        """Log backward messages ``(*lead, T, K)``: 0 at the last real step and past it."""
        def step(log_beta_next, inputs):
            e_next, m_next = inputs
            moved = jax.nn.logsumexp(transition + (e_next + log_beta_next)[..., None, :], axis=-1)
            log_beta = jnp.where(m_next[..., None], moved, 0.0)
            return log_beta, log_beta

        next_emission = jnp.concatenate([emission[..., 1:, :], jnp.zeros_like(emission[..., :1, :])], axis=-2)
        next_mask = jnp.concatenate([mask[..., 1:], jnp.zeros_like(mask[..., :1])], axis=-1)
        start = jnp.zeros(emission.shape[:-2] + emission.shape[-1:], emission.dtype)
        _, betas = jax.lax.scan(step, start, (jnp.moveaxis(next_emission, -2, 0), jnp.moveaxis(next_mask, -1, 0)),
                                reverse=True)
        return jnp.moveaxis(betas, 0, -2)

    def log_prob(self, states: jax.Array, context: list, mask: jax.Array) -> jax.Array:
        """log q(z_1:T | y, θ) of simulated chains ``states (*lead, T)``, placed at the first step.

        Returns ``(*lead, T)`` whose sum over the real steps is the chain's log
        probability (the other steps hold 0), for the caller's masked sum.
        """
        initial, emission, transition, mask = self.scores(context, mask)
        states = states.astype(jnp.int32)
        _, log_normalizer = self._forward(initial, emission, transition, mask)
        pick = jnp.take_along_axis(emission, states[..., None], axis=-1)[..., 0]
        previous = jnp.concatenate([states[..., :1], states[..., :-1]], axis=-1)
        moves = transition[..., None, :, :]  # (*lead, 1, K, K)
        moved = jnp.take_along_axis(jnp.take_along_axis(moves, previous[..., None, None], axis=-2)[..., 0, :],
                                    states[..., None], axis=-1)[..., 0]
        first = jnp.arange(states.shape[-1]) == 0
        start = jnp.take_along_axis(initial, states[..., :1], axis=-1)[..., 0]
        score = jnp.sum(jnp.where(mask, pick + jnp.where(first, 0.0, moved), 0.0), axis=-1) + start
        return jnp.where(first, (score - log_normalizer)[..., None], 0.0)

    def sample(self, key: jax.Array, context: list, mask: jax.Array):
        """Joint draws of the chain by backward sampling, with the filtered and smoothed marginals.

        Returns
        -------
        states : ``(*lead, T)`` int (0 at padded steps)
        filtered, smoothed : ``(*lead, T, classes)``
        """
        initial, emission, transition, mask = self.scores(context, mask)
        log_alpha, _ = self._forward(initial, emission, transition, mask)
        log_beta = self._backward(emission, transition, mask)
        filtered = jax.nn.softmax(log_alpha, axis=-1)
        smoothed = jax.nn.softmax(log_alpha + log_beta, axis=-1)
        lead = log_alpha.shape[:-2]
        keys = jax.random.split(key, log_alpha.shape[-2])

        def step(carry, inputs):
            next_state, has_next = carry
            log_alpha_t, m_t, k = inputs
            into_next = jnp.take_along_axis(transition, next_state[..., None, None], axis=-1)[..., 0]
            logits = log_alpha_t + jnp.where(has_next[..., None], into_next, 0.0)
            state = jnp.where(m_t, jax.random.categorical(k, logits), 0)
            return (jnp.where(m_t, state, next_state), has_next | m_t), state

        start = (jnp.zeros(lead, jnp.int32), jnp.zeros(lead, bool))
        _, states = jax.lax.scan(step, start, (jnp.moveaxis(log_alpha, -2, 0), jnp.moveaxis(mask, -1, 0), keys),
                                 reverse=True)
        return jnp.moveaxis(states, 0, -1), filtered, smoothed
