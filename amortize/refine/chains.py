"""Hidden Markov chains summed out of the importance weights by the forward algorithm.

Weighting a drawn chain z_1:T of a hidden Markov model by
p(θ, z, y) / q(θ, z | y) is plain importance sampling over T discrete latents:
its weights degrade with the chain's length even when q is good. When the
program is a first-order hidden Markov model along its ordered level,

    log p(θ, z, y) = outer(θ) + init(z_1) + Σ_(t>1) A_t(z_(t-1), z_t) + Σ_t e_t(z_t),

the chain can be summed out exactly: log p(θ, y) is the forward algorithm's
normalizer, and the weights p(θ, y) / q(θ | y) involve the continuous
latents only. After resampling θ, each chain is drawn from its exact
conditional p(z | θ, y) by forward filtering, backward sampling, and the
exact filtered and smoothed marginals replace the classifier's.

The terms come from the program itself, evaluated at K² chains: the
constant chains z ≡ k give every e_t(k); the alternating chains
(a, b, a, b, ...) give A_t(a, b) at odd t and A_t(b, a) at even t. The
decomposition is an assumption about the program (emissions that depend on
the current state only, transitions on the previous one), so it is checked:
at the drawn chains, the decomposed density must equal the program's own to
float tolerance; where it does not, nothing is summed out and the caller
weighs the drawn chains as before.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from amortize.graph import Factorization, ModelGraph
from amortize.graph.factorize import Factor
from amortize.refine.density import log_density_terms

__all__ = ["summable_chain", "chain_density_function", "summed_log_density", "ChainSum", "sum_out_chain",
           "draw_chains"]


def summable_chain(graph: ModelGraph, factorization: Factorization) -> Factor | None:
    """The one Markov chain factor that may be summed out, or None.

    It qualifies when it is the program's only Markov factor, runs along a
    top-level ordered level, and is the only latent factor at or below that level.
    """
    chains = [f for f in factorization if f.markov]
    if len(chains) != 1:
        return None
    chain = chains[0]
    if len(chain.path) != 1:
        return None
    level = chain.path[0]
    if any(f.name != chain.name and f.path and f.path[0] == level for f in factorization):
        return None
    return chain


def _chain_parts(graph: ModelGraph, factorization: Factorization, sizes: dict, chain: Factor):
    """One draw's ``(values, data, masks) -> (outer (), emission (T,), transition (T,))``, unjitted."""
    level = chain.path[0]
    site_name = chain.targets[0]
    terms_of = log_density_terms(graph, factorization, sizes)
    paths = {n: s.path for n, s in graph.sites.items()}

    def parts(values, data, masks):
        terms = terms_of(values, data, masks)
        outer = 0.0
        emission = jnp.zeros(masks[level].shape)
        transition = jnp.zeros(masks[level].shape)
        for name, value in terms.items():
            path = paths[name]
            if path:
                value = jnp.where(masks[path[-1]], value, 0.0)
            if name == site_name:
                transition = value
            elif path and path[0] == level:
                emission = emission + value.reshape(value.shape[:1] + (-1,)).sum(-1)
            else:
                outer = outer + value.sum()
        return outer, emission, transition

    return parts


def chain_density_function(graph: ModelGraph, factorization: Factorization, sizes: dict, chain: Factor):
    """A jitted ``(values, data, masks) -> (outer (N,), emission (N, T), transition (N, T))``.

    ``transition[:, t]`` is the chain site's log density at step t (its
    initial distribution at t = 0), ``emission[:, t]`` the sum of every
    other site's at step t (sub-plates included), ``outer`` everything else;
    padded instances count 0. Arguments as for
    :func:`~amortize.refine.density.log_density_function`.
    """
    parts = _chain_parts(graph, factorization, sizes, chain)
    return jax.jit(jax.vmap(parts, in_axes=(0, None, None)))


def summed_log_density(graph: ModelGraph, factorization: Factorization, sizes: dict, chain: Factor):
    """A differentiable ``(values, data, masks) -> log p(θ, y)``, the chain summed out, for one draw.

    ``values``: every factor but the chain, unconstrained packed ``(*plates, dim)``.
    The same decomposition as :func:`sum_out_chain` (K² chains, forward
    algorithm), in JAX, so that NUTS can run on the other latents
    (``refine="nuts"``); the caller checks the decomposition once with
    :func:`sum_out_chain` before trusting it.
    """
    parts = _chain_parts(graph, factorization, sizes, chain)
    level, k = chain.path[0], chain.classes

    def log_p(values, data, masks):
        steps = masks[level].shape[0]
        odd = jnp.arange(steps) % 2 == 1
        z, outer, emission, initial = {}, None, [], []
        for a in range(k):
            for b in range(k):
                pattern = jnp.where(odd, b, a).astype(jnp.float32)[:, None]
                out, e, z[a, b] = parts(dict(values, **{chain.name: pattern}), data, masks)
                if a == b:
                    emission.append(e)
                    outer = out if outer is None else outer
            initial.append(z[a, a][0])
        # A_t(a, b): from the chain (a, b, a, ...) at odd t, from (b, a, b, ...) at even t.
        transition = jnp.stack([jnp.stack([jnp.where(odd, z[a, b], z[b, a]) for b in range(k)], -1)
                                for a in range(k)], -2)  # (T, K, K)
        emission = jnp.stack(emission, -1)  # (T, K)

        def step(log_alpha, inputs):
            a_t, e_t, m_t = inputs
            new = jax.nn.logsumexp(log_alpha[:, None] + a_t, axis=0) + e_t
            return jnp.where(m_t, new, log_alpha), None

        first = jnp.stack(initial) + emission[0]
        last, _ = jax.lax.scan(step, first, (transition[1:], emission[1:], masks[level][1:]))
        return outer + jax.nn.logsumexp(last)

    return log_p


class ChainSum(NamedTuple):
    """The chain's exact terms at each draw of the other latents (host arrays, float64).

    Attributes
    ----------
    log_p : ``(N,)`` log p(θ, y), the chain summed out
    log_alpha : ``(N, T, K)`` log forward messages (held past the last real step)
    initial : ``(N, K)``; transition : ``(N, T, K, K)`` (row: previous state); emission : ``(N, T, K)``
    mask : ``(T,)`` real steps
    """

    log_p: np.ndarray
    log_alpha: np.ndarray
    initial: np.ndarray
    transition: np.ndarray
    emission: np.ndarray
    mask: np.ndarray


def _logsumexp(x, axis):
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(top, axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def sum_out_chain(evaluate, values: dict, chain: Factor, mask: np.ndarray,
                  tolerance: float = 1e-4) -> ChainSum | None:
    """Sum the chain out of the program's density at each draw of the other latents.

    Parameters
    ----------
    evaluate : ``values -> (outer, emission, transition)`` host arrays, as
        :func:`chain_density_function` gives them (bound to one data set, chunked by the caller).
    values : dict of factor → ``(N, *plates, dim)``, the drawn chain included (``(N, T, 1)``)
    chain : the chain factor; mask : ``(T,)`` bool, the real steps.
    tolerance : float
        Relative tolerance of the check that the program decomposes as a
        first-order hidden Markov model (at the drawn chains).

    Returns
    -------
    ChainSum, or None when the program's density does not decompose so.
    """
    k = chain.classes
    drawn = np.asarray(values[chain.name])[..., 0].astype(np.int64)  # (N, T)
    n, steps = drawn.shape
    parity = np.arange(steps) % 2
    odd = parity == 1
    even = (parity == 0) & (np.arange(steps) > 0)

    def at(pattern):
        vs = dict(values)
        vs[chain.name] = np.broadcast_to(pattern[None, :, None].astype(np.float32), (n, steps, 1))
        return tuple(np.asarray(v, np.float64) for v in evaluate(vs))

    outer = None
    emission = np.zeros((n, steps, k))
    transition = np.zeros((n, steps, k, k))
    initial = np.zeros((n, k))
    for a in range(k):
        for b in range(k):
            out, e, z = at(np.where(parity == 0, a, b))
            if a == b:
                emission[..., a] = e
                outer = out if outer is None else outer
            if a == b:
                initial[:, a] = z[:, 0]
            transition[:, odd, a, b] = z[:, odd]            # previous a (even t − 1), current b
            transition[:, even, b, a] = z[:, even]          # previous b (odd t − 1), current a
    # The check: the decomposition at the drawn chains against the program's own density there.
    out_d, e_d, z_d = (np.asarray(v, np.float64) for v in evaluate(values))
    own = out_d + e_d.sum(1) + z_d.sum(1)
    rows = np.arange(n)[:, None]
    previous = np.concatenate([drawn[:, :1], drawn[:, :-1]], axis=1)
    t_index = np.arange(steps)[None, :]
    step_terms = np.where(t_index == 0, initial[rows[:, 0], drawn[:, 0]][:, None],
                          transition[rows, t_index, previous, drawn])
    decomposed = outer + (np.where(mask, emission[rows, t_index, drawn] + step_terms, 0.0)).sum(1)
    finite = np.isfinite(own) & np.isfinite(decomposed)
    if not finite.any() or np.any(np.isfinite(own) != np.isfinite(decomposed)):
        return None
    scale = np.abs(out_d) + np.abs(e_d).sum(1) + np.abs(z_d).sum(1) + 1.0
    if np.any(np.abs(own[finite] - decomposed[finite]) > tolerance * scale[finite]):
        return None

    log_alpha = np.empty((n, steps, k))
    current = initial + emission[:, 0]
    log_alpha[:, 0] = current
    for t in range(1, steps):
        moved = _logsumexp(current[:, :, None] + transition[:, t], axis=1) + emission[:, t]
        current = np.where(mask[t], moved, current)
        log_alpha[:, t] = current
    log_p = outer + _logsumexp(current, axis=1)
    return ChainSum(log_p, log_alpha, initial, transition, emission, np.asarray(mask, bool))


def draw_chains(rng: np.random.Generator, summed: ChainSum, index: np.ndarray):
    """Exact draws of the chain given the other latents (forward filtering, backward sampling).

    Parameters
    ----------
    rng : numpy Generator
    summed : ChainSum
    index : ``(S,)`` the draws (rows of ``summed``) to draw a chain for.

    Returns
    -------
    states : ``(S, T)`` int (0 at padded steps)
    filtered, smoothed : ``(S, T, K)`` p(z_t | θ, y_1:t) and p(z_t | θ, y_1:T)
    """
    log_alpha = summed.log_alpha[index]
    transition = summed.transition[index]
    emission = summed.emission[index]
    mask = summed.mask
    s, steps, k = log_alpha.shape
    filtered = np.exp(log_alpha - _logsumexp(log_alpha, axis=2)[..., None])
    log_beta = np.zeros((s, steps, k))
    for t in range(steps - 2, -1, -1):
        if mask[t + 1]:
            log_beta[:, t] = _logsumexp(transition[:, t + 1] + (emission[:, t + 1] + log_beta[:, t + 1])[:, None, :],
                                        axis=2)
    joint = log_alpha + log_beta
    smoothed = np.exp(joint - _logsumexp(joint, axis=2)[..., None])
    states = np.zeros((s, steps), np.int64)
    last = int(np.flatnonzero(mask)[-1]) if mask.any() else 0
    following = None
    for t in range(last, -1, -1):
        logits = log_alpha[:, t]
        if following is not None:
            logits = logits + transition[np.arange(s), t + 1, :, following]
        gumbel = rng.gumbel(size=logits.shape)
        states[:, t] = np.argmax(logits + gumbel, axis=1)
        following = states[:, t]
    filtered[:, ~mask] = 0.0
    smoothed[:, ~mask] = 0.0
    return states, filtered, smoothed
