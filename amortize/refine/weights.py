"""Importance weights from the program's own density: the certificate and ``refine="psis"``.

The amortized posterior q(θ | y) is a proposal; the program's joint density
p(θ, y) is the target. Self-normalized importance weights w = p(θ, y) / q(θ | y)
certify the proposal (Pareto k̂, effective sample size) and, resampled,
correct it.

Plain importance sampling over all latents at once degrades exponentially
with their number (one factor per group: radon has 85 counties). A
multilevel program's density factorizes, so the weights do too (importance
sampling squared, Tran, Scharth, Pitt & Kohn 2013):

* for each outer draw φ_s ~ q(φ | y) (the global sites, and whatever lies
  outside every group), draw M local blocks per group from the amortized
  local factors, θ_jm ~ q(θ_j | φ_s, y_j), and estimate each group's marginal
  likelihood  p̂(y_j | φ_s) = (1/M) Σ_m p(θ_jm, y_j | φ_s) / q(θ_jm | φ_s, y_j);
* weight the outer draw by  W_s = p(φ_s, y_outer) Π_j p̂(y_j | φ_s) / q(φ_s | y);
* resample outer draws by their Pareto-smoothed W_s, and, for each, one of
  its M local draws per group by the inner weights.

Because p̂ is unbiased, the outer weights target the exact marginal
posterior of φ; the resampled locals given φ are exact as M grows. The noise
of log p̂ inflates the outer weights' variance by about exp(Σ_j var log p̂_j),
so M is chosen from a pilot to keep that sum near ``target_variance``.

One concept in one module (about 500 lines): :func:`importance` decides
between plain, chain-summed and hierarchical weights and resamples; the
helpers below compute each. (Named ``weights`` so that the module does not
share the name of the function ``amortize.refine.importance``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from amortize.prepare import PreparedData
from amortize.padded_program import padded_from_prepared
from amortize.errors import RefineError
from amortize.graph import Factorization, ModelGraph
from amortize.refine.certificate import Certificate
from amortize.refine.chains import chain_density_function, draw_chains, summable_chain, sum_out_chain
from amortize.refine.density import block_plates, density_arguments, log_density_function, split_by_block
from amortize.program.trace import sites_without_log_prob
from amortize.refine.pareto import khat_threshold, log_mean_exp, psis, relative_ess, resample
from amortize.padded_program import masked_program, program_arguments

__all__ = ["Certificate", "ImportanceResult", "importance", "inner_weights", "compiled_density", "chain_sum",
           "enumerated_classes", "plain_weights_first", "MIN_DRAWS"]

#: Fewest draws for which a Pareto fit of the weights is attempted.
MIN_DRAWS = 100

#: Local draws come from the defensive mixture 0.9 q + 0.1 q_2 (q with a twice wider base), which
#: bounds the inner weights where a local flow's tails are too light (Hesterberg 1995).
DEFENSIVE = (0.1, 2.0)

#: Global draws, and local draws per group at each, behind each level's k̂ in the certificate and
#: the choice of M (the first proposal draws: q-distributed).
DIAGNOSTIC_GLOBALS, DIAGNOSTIC_DRAWS = 8, 256

#: At most this many program array elements are evaluated for all inner draws together (bounds M
#: on large data sets; the outer k̂ then shows whether the M that fits was enough).
_INNER_WORK = 5e8

#: At most this many local draws (outer draws × M × groups) in all: about a second of local flows.
_INNER_LOCAL_DRAWS = 2e6

#: Plain weights over all latents are used as they are, without the inner passes, when their k̂ is
#: within the threshold and their relative ESS is at least JOINT_ENOUGH, or at least JOINT_SHARE of
#: the most the hierarchical weights could keep given the pilot's inner variance.
JOINT_ENOUGH, JOINT_SHARE = 0.25, 0.75

#: Elements of program arrays evaluated at once (sets the chunk size; about 1 GB of work space).
_WORK_ELEMENTS = 2.5e7


@dataclass(frozen=True)
class ImportanceResult:
    """What :func:`importance` returns.

    Attributes
    ----------
    values : dict of factor → unconstrained ``(1, N, *plates, dim)``
        The proposal draws (``resample=None``) or the resampled, corrected ones.
    probabilities : dict of group → {factor: ``(1, N, *plates, classes)``}
        The classifiers' class probabilities of the same draws.
    certificate : Certificate
    joint_log_weights : array ``(S,)``
        log p(θ, y) − log q(θ | y) of each proposal draw with its own locals
        (with a hidden Markov chain summed out, where the certificate sums it out)
        (−inf where the program's density is zero or not finite there).
    """

    values: dict
    probabilities: dict
    certificate: Certificate
    joint_log_weights: np.ndarray


def _tree_host(tree):
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def _program_elements(prepared: PreparedData) -> int:
    total = sum(int(np.prod(np.shape(v))) for v in prepared.data.values())
    total += sum(int(np.prod(np.shape(m))) for m in prepared.masks.values())
    return max(total, 1)


def _evaluate(density, values: dict, chunk: int) -> dict:
    """``density`` over the leading axis of ``values`` in chunks of ``chunk`` (the last one padded)."""
    n = next(iter(values.values())).shape[0]
    parts = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        index = np.minimum(np.arange(start, start + chunk), n - 1)
        part = _tree_host(density({f: jnp.asarray(v[index]) for f, v in values.items()}))
        parts.append({k: v[: stop - start] for k, v in part.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _total(parts: dict) -> np.ndarray:
    total = np.asarray(parts["outer"], np.float64)
    for name, value in parts.items():
        if name != "outer":
            total = total + np.asarray(value, np.float64).sum(axis=-1)
    return total


def _finite(values):
    values = np.asarray(values, np.float64)
    return np.where(np.isnan(values), -np.inf, values)


def importance(draw, graph: ModelGraph, factorization: Factorization, prepared: PreparedData,
               key: jax.Array, *, num_draws: int, resample_to: int | None = None,
               inner_draws: int | None = None, max_inner_draws: int = 256,
               target_variance: float = 0.25, proposal=None, cache: dict | None = None,
               outer_proposal=None) -> ImportanceResult:
    """Importance weights of amortized draws under the program's density; optionally resampled.

    Parameters
    ----------
    draw : callable
        ``(key, data, masks, num_samples, fixed) -> LatentDraws`` (see
        :func:`amortize.infer.make_latent_sampler`).
    graph, factorization : the compiled program.
    prepared : PreparedData
        One data set, at the padded sizes the sampler runs at.
    key : PRNG key
    num_draws : int
        Outer proposal draws S.
    resample_to : int, optional
        Return this many draws resampled by the (Pareto-smoothed) weights
        (``refine="psis"``); by default the proposal draws themselves come back
        with the certificate, which is then a verdict (is q confirmed?: the
        certificate of unrefined draws, and ``refine="nuts"``, which takes its
        starting points and mass matrix from q): plain weights over all
        latents whose k̂ is within the threshold confirm q by themselves, so
        the hierarchical weights are computed only where they do not,
        whatever the plain weights' ESS (which matters for resampling).
    inner_draws : int, optional
        M, local draws per group and outer draw; by default chosen from a pilot
        (256 local draws at 8 global draws) so that the summed variance of the groups' log p̂ is about
        ``target_variance`` (a power of two, at least 4, at most
        ``max_inner_draws`` and at most what keeps the inner work under about
        5·10⁸ program array elements and 2·10⁶ local draws). A block holding only a mixture
        indicator is summed over its K classes exactly instead (M = K).
    proposal : LatentDraws, optional
        Outer draws already made (``num_draws`` of them), reused instead of drawing new ones.
    outer_proposal : callable, optional
        ``(only) -> LatentDraws``: ``num_draws`` draws of the outer factors
        named in ``only`` (a tuple), which the hierarchical weights use instead
        of ``proposal``'s, when they are needed (``refine="psis"`` passes the
        defensive mixture here: ``proposal`` from q itself serves the plain
        weights, which the mixture in every factor would spoil). Only the outer
        factors are asked for: the inner passes draw the locals anew.
    cache : dict, optional
        Compiled density functions by padded sizes, kept between calls (the
        amortizer keeps one), so a data set of known sizes compiles nothing.

    Returns
    -------
    ImportanceResult

    Notes
    -----
    A program with groups gets plain weights over all latents when they are
    already reliable (k̂ within the threshold) and keep at least
    :data:`JOINT_ENOUGH` of the draws, or three quarters of exp(−V / M), the
    most the hierarchical weights could keep given the pilot's summed inner
    variance V: the inner passes would only add their cost and the noise of
    p̂ (method ``"importance (joint)"``; the per-level diagnostics are still
    computed); without ``resample_to``, whenever they are reliable. Otherwise
    importance sampling squared.

    Raises
    ------
    RefineError
        Fewer than :data:`MIN_DRAWS` draws, or a program site without a usable density.
    """
    if num_draws < MIN_DRAWS:
        raise RefineError(f"Importance weights need at least {MIN_DRAWS} draws for a Pareto fit of their "
                          f"tail; got {num_draws}. Ask for more draws (num_samples).")
    padded = padded_from_prepared(prepared, graph)
    blocks = block_plates(graph, factorization)
    density = compiled_density(graph, factorization, padded, blocks, cache)

    masks = {p: np.asarray(m[0]) for p, m in prepared.masks.items()}
    factor_paths = {f.name: f.path for f in factorization}
    first_key, inner_key, pilot_key, resample_key = jax.random.split(key, 4)
    first = proposal if proposal is not None else draw(first_key, prepared.data, prepared.masks, num_draws)
    first = _tree_host(first)
    values = {f: v[0] for f, v in first.values.items()}
    log_q = split_by_block({f: v[0] for f, v in first.log_q.items()}, factor_paths, masks, blocks)
    log_q = _tree_host(log_q)
    chunk = max(1, int(_WORK_ELEMENTS // (10 * _program_elements(prepared))))
    try:
        log_p = _evaluate(density, values, min(chunk, num_draws))
    except NotImplementedError as error:
        missing = [n for n in sites_without_log_prob(masked_program(graph, padded),
                                                     program_arguments(graph, padded)) if n in graph.sites]
        raise RefineError(
            f"Site(s) {', '.join(f'`{n}` ({graph.sites[n].distribution})' for n in missing) or '?'} of the "
            f"program have no log density (their distribution has no log_prob), so the program cannot "
            f"weigh amortized draws: no certificate and no refinement. Sample with certify=False, or give "
            f"the distribution a log_prob."
        ) from error
    joint = _finite(_total(log_p) - _total(log_q))
    zero_density = float(np.mean(np.isneginf(_total(log_p))))
    joint_smoothed, joint_khat = psis(joint)
    joint_ess = float(relative_ess(joint_smoothed))
    threshold = khat_threshold(num_draws)

    chain = summable_chain(graph, factorization) if not blocks else None
    summed = None
    if chain is not None:
        summed = chain_sum(graph, factorization, prepared, chain, values, cache)
    if summed is not None:
        # The chain summed out: weights over the other latents only, p(θ, y) / q(θ | y).
        others = {f: v[0] for f, v in first.log_q.items() if f != chain.name}
        log_q_others = _total(_tree_host(split_by_block(others, factor_paths, masks, ())))
        log_w = _finite(summed.log_p - log_q_others)
        smoothed, khat = psis(log_w)
        certificate = Certificate("importance, chain summed out", khat, float(relative_ess(smoothed)), num_draws,
                                  None, {}, joint_khat, joint_ess, float(log_mean_exp(log_w)), threshold,
                                  zero_density=float(np.mean(np.isneginf(summed.log_p))))
        selected = values
        probabilities = {g: {f: v[0] for f, v in ps.items()} for g, ps in first.probabilities.items()}
        if resample_to is not None:
            rng = _rng(resample_key)
            index = resample(rng, smoothed, resample_to)
            states, filtered, exact = draw_chains(rng, summed, index)
            selected = {f: v[index] for f, v in values.items()}
            selected[chain.name] = states[..., None].astype(np.float32)
            probabilities = {g: {f: v[index] for f, v in ps.items()} for g, ps in probabilities.items()}
            probabilities.setdefault("indicator_probabilities", {})[chain.name] = exact
            probabilities.setdefault("indicator_filtered_probabilities", {})[chain.name] = filtered
        return ImportanceResult(_lead(selected), _lead(probabilities), certificate, log_w)

    def plain(method: str, levels: dict) -> ImportanceResult:
        """The plain weights over all latents, as the result (resampled when asked)."""
        certificate = Certificate(method, joint_khat, joint_ess, num_draws, None, levels, joint_khat, joint_ess,
                                  float(log_mean_exp(joint)), threshold, zero_density=zero_density)
        selected = values
        probabilities = {g: {f: v[0] for f, v in ps.items()} for g, ps in first.probabilities.items()}
        if resample_to is not None:
            index = resample(_rng(resample_key), joint_smoothed, resample_to)
            selected = {f: v[index] for f, v in values.items()}
            probabilities = {g: {f: v[index] for f, v in ps.items()} for g, ps in probabilities.items()}
        return ImportanceResult(_lead(selected), _lead(probabilities), certificate, joint)

    if not blocks:
        return plain("importance", {})

    inner = {f.name for f in factorization if f.path and f.path[0] in blocks}
    outer = [f.name for f in factorization if f.name not in inner]
    n_blocks = {p: masks[p].shape[0] if p in masks else 1 for p in blocks}
    real = {p: np.asarray(prepared.instances[p][:, 0]) for p in blocks}

    def inner_pass(index, m, key):
        return inner_weights(draw, density, prepared, {f: values[f][index] for f in outer}, inner, m, key,
                             blocks, chunk, factor_paths)

    # A block holding only a mixture indicator (a classifier at the block's own level) is summed out
    # exactly: enumeration is importance sampling with each class proposed once, q = 1/K.
    k = enumerated_classes(factorization, blocks)
    enumerated = k is not None
    if enumerated:
        def inner_pass(index, m, key):  # noqa: F811 (the exact version of the sampled pass above)
            local = {f: np.repeat(values[f][index], k, axis=0) for f in outer}
            for f in inner:
                shape = values[f].shape[1:]
                local[f] = np.broadcast_to(np.tile(np.arange(k, dtype=np.float32), len(index)).reshape(
                    (-1,) + (1,) * len(shape)), (len(index) * k,) + shape)
            lp = _evaluate(density, local, min(chunk, len(index) * k))
            weights = {p: _finite(lp[p] + math.log(k)).reshape(len(index), k, n_blocks[p]) for p in blocks}
            return weights, lp["outer"].reshape(len(index), k)[:, 0], None

        inner_draws = k
    levels = {}
    if not enumerated:
        # One pilot pass serves two ends: many local draws (DIAGNOSTIC_DRAWS) per group at a few
        # global draws give each level's own diagnostic, and the variance of log p̂ that sets M.
        pilot = np.arange(min(num_draws, DIAGNOSTIC_GLOBALS))
        weights, _, _ = inner_pass(pilot, DIAGNOSTIC_DRAWS, pilot_key)
        levels = _level_diagnostics(weights, blocks, real, prepared)
    variance = math.inf
    if not enumerated:
        # Delta method: var log p̂ with M draws ≈ (E[w̃²] − 1) / M, w̃ the weights over their mean;
        # summed over the groups (at M = 1), the median over the pilot's global draws.
        total = 0.0
        for p in blocks:
            w = weights[p][..., real[p]]  # (s, draws, j)
            normalized = np.exp(w - log_mean_exp(w, axis=1)[:, None])
            total = total + np.nansum(np.nanmean(normalized**2, axis=1) - 1.0, axis=-1)
        variance = float(np.median(total))
    if not enumerated and inner_draws is None:
        needed = variance / target_variance
        groups = sum(len(real[p]) for p in blocks)
        affordable = min(_INNER_WORK / (num_draws * _program_elements(prepared)),
                         _INNER_LOCAL_DRAWS / (num_draws * max(groups, 1)))
        inner_draws = int(min(max_inner_draws, 2 ** math.ceil(math.log2(max(needed, 1.0))),
                              2 ** math.floor(math.log2(max(affordable, 1.0)))))
        inner_draws = max(4, inner_draws)
    m = int(inner_draws)
    # The noise of log p̂ alone leaves the hierarchical weights at most exp(−variance / M) of the
    # draws (times the globals' own efficiency): plain weights that come close to it are as good.
    ceiling = math.exp(-variance / m) if not enumerated and np.isfinite(variance) else 0.0
    if (not enumerated and joint_khat <= threshold
            and (resample_to is None or joint_ess >= min(JOINT_ENOUGH, JOINT_SHARE * ceiling))):
        # The plain weights are reliable and keep enough draws: no inner passes needed.
        return plain("importance (joint)", levels)
    if outer_proposal is not None:
        # The hierarchical weights' outer draws come from the caller's other proposal.
        first = _tree_host(outer_proposal(tuple(outer)))
        values = {f: v[0] for f, v in first.values.items()}
        log_q = _tree_host(split_by_block({f: v[0] for f, v in first.log_q.items()}, factor_paths, masks, blocks))
    per_chunk = max(1, min(num_draws, chunk // m if chunk >= m else 1))
    outer_log_w = np.empty(num_draws)
    inner_log_w = {p: np.empty((num_draws, m, n_blocks[p])) for p in blocks}
    keep = resample_to is not None
    stored, stored_probabilities = {}, {}
    for i, start in enumerate(range(0, num_draws, per_chunk)):
        index = np.arange(start, min(start + per_chunk, num_draws))
        padded_index = np.minimum(np.arange(start, start + per_chunk), num_draws - 1)
        weights, outer_lp, second = inner_pass(padded_index, m, jax.random.fold_in(inner_key, i))
        n = len(index)
        log_p_hat = 0.0
        for p in blocks:
            inner_log_w[p][index] = weights[p][:n]
            log_p_hat = log_p_hat + log_mean_exp(weights[p][:n], axis=1).sum(axis=-1)
        outer_log_w[index] = outer_lp[:n] + log_p_hat - log_q["outer"][index]
        if keep and not enumerated:
            for f in inner:
                value = second.values[f][0]
                stored.setdefault(f, []).append(value.reshape((per_chunk, m) + value.shape[1:])[:n])
            for group, ps in second.probabilities.items():
                for f, value in ps.items():
                    if f in inner:
                        stored_probabilities.setdefault(group, {}).setdefault(f, []).append(
                            value[0].reshape((per_chunk, m) + value.shape[2:])[:n])
    outer_log_w = _finite(outer_log_w)
    smoothed, khat = psis(outer_log_w)
    method = "hierarchical importance, indicators summed out" if enumerated else "hierarchical importance"
    certificate = Certificate(method, khat, float(relative_ess(smoothed)), num_draws, m,
                              levels, joint_khat, joint_ess, float(log_mean_exp(outer_log_w)), threshold,
                              zero_density=zero_density)
    probabilities = {g: {f: v[0] for f, v in ps.items() if f not in inner}
                     for g, ps in first.probabilities.items()}
    if not keep:
        # The proposal draws themselves, with their own locals.
        probabilities = {g: {f: v[0] for f, v in ps.items()} for g, ps in first.probabilities.items()}
        return ImportanceResult(_lead(values), _lead(probabilities), certificate, joint)

    rng = _rng(resample_key)
    index = resample(rng, smoothed, resample_to)
    selected = {f: values[f][index] for f in outer}
    probabilities = {g: {f: v[index] for f, v in ps.items()} for g, ps in probabilities.items()}
    choice = {}
    for p in blocks:
        w = inner_log_w[p][index]  # (N, m, n_block)
        gumbel = rng.gumbel(size=w.shape)
        choice[p] = np.argmax(w + gumbel, axis=1)  # (N, n_block)
    for f in inner:
        p = factor_paths[f][0]
        if enumerated:  # the chosen class, drawn from its exact conditional p(z_j | φ, y_j)
            selected[f] = choice[p][..., None].astype(np.float32)
            exact = np.exp(inner_log_w[p][index] - np.logaddexp.reduce(inner_log_w[p][index], axis=1)[:, None])
            probabilities.setdefault("indicator_probabilities", {})[f] = np.moveaxis(exact, 1, -1)
            continue
        value = np.concatenate(stored[f])  # (S, m, n_block, ...)
        selected[f] = value[index[:, None], choice[p], np.arange(n_blocks[p])[None, :]]
    for group, ps in stored_probabilities.items():
        for f, parts in ps.items():
            p = factor_paths[f][0]
            value = np.concatenate(parts)
            probabilities.setdefault(group, {})[f] = value[index[:, None], choice[p],
                                                           np.arange(n_blocks[p])[None, :]]
    return ImportanceResult(_lead(selected), _lead(probabilities), certificate, joint)


def enumerated_classes(factorization: Factorization, blocks: tuple[str, ...]) -> int | None:
    """K when every factor inside the ``blocks`` is one mixture indicator at its block's own level (the
    hierarchical weights then sum the K classes out exactly); None otherwise."""
    inner = [f for f in factorization if f.path and f.path[0] in blocks]
    classes = {f.classes for f in inner}
    if inner and len(classes) == 1 and all(f.kind == "classifier" and len(f.path) == 1 for f in inner):
        return classes.pop()
    return None


def plain_weights_first(factorization: Factorization, blocks: tuple[str, ...]) -> bool:
    """Whether :func:`importance` tries plain weights over all latents before the hierarchical ones
    (programs with groups whose indicators are not summed out), so its proposal should come from q."""
    return bool(blocks) and enumerated_classes(factorization, blocks) is None


def chain_sum(graph: ModelGraph, factorization: Factorization, prepared: PreparedData, chain, values: dict,
              cache: dict | None = None):
    """:func:`~amortize.refine.chains.sum_out_chain` on one data set: ``values`` of factor → ``(N, *plates, dim)``
    (the chain's drawn or any placeholder states included); the density is compiled once per sizes."""
    padded = padded_from_prepared(prepared, graph)
    cache = {} if cache is None else cache
    cache_key = ("chain", tuple(sorted(padded.sizes.items())), chain.name)
    if cache_key not in cache:
        cache[cache_key] = chain_density_function(graph, factorization, padded.sizes, chain)
    compiled = cache[cache_key]
    data, plate_masks = density_arguments(padded)
    chunk = max(1, int(_WORK_ELEMENTS // (10 * _program_elements(prepared))))

    def evaluate(vs):
        parts = _evaluate(lambda v: dict(zip(("outer", "emission", "transition"),
                                             compiled(v, data, plate_masks))), vs,
                          min(chunk, next(iter(vs.values())).shape[0]))
        return parts["outer"], parts["emission"], parts["transition"]

    return sum_out_chain(evaluate, values, chain, np.asarray(prepared.masks[chain.path[0]][0], bool))


def compiled_density(graph: ModelGraph, factorization: Factorization, padded, blocks, cache: dict | None,
                     exclude: tuple[str, ...] = ()):
    """``values -> {"outer", plate: ...}``: the program's log density on ``padded``'s data, compiled once
    per padded sizes (kept in ``cache``; see :func:`~amortize.refine.density.log_density_function`),
    without the sites in ``exclude``."""
    cache = {} if cache is None else cache
    cache_key = (tuple(sorted(padded.sizes.items())), blocks, tuple(exclude))
    if cache_key not in cache:
        cache[cache_key] = log_density_function(graph, factorization, padded.sizes, blocks, exclude)
    compiled = cache[cache_key]
    data, plate_masks = density_arguments(padded)
    return lambda values: compiled(values, data, plate_masks)


def inner_weights(draw, density, prepared: PreparedData, outer_values: dict, inner, m: int, key,
                  blocks: tuple[str, ...], chunk: int, factor_paths: dict):
    """Inner log weights of ``m`` local draws per group at each of ``n`` given outer draws.

    Parameters
    ----------
    draw : the latent sampler; density : ``values -> {"outer", plate: ...}`` on ``prepared``
    outer_values : dict of outer factor → unconstrained ``(n, *plates, dim)``
    inner : names of the factors inside the blocks (drawn here, from the defensive mixture)

    Returns
    -------
    weights : dict of block plate → ``(n, m, n_block)`` log p(θ_jm, y_j | φ) − log q(θ_jm | φ, y_j)
    outer_log_p : ``(n,)`` the outer part of log p
    draws : LatentDraws of the ``n · m`` inner draws (outer factors fixed), on the host
    """
    n = next(iter(outer_values.values())).shape[0]
    fixed = {f: jnp.asarray(np.repeat(v, m, axis=0)[None]) for f, v in outer_values.items()}
    second = _tree_host(draw(key, prepared.data, prepared.masks, n * m, fixed, DEFENSIVE))
    local = {f: (second.values[f][0] if f in inner else np.repeat(outer_values[f], m, axis=0))
             for f in second.values}
    lp = _evaluate(density, local, min(chunk, n * m))
    masks = {p: np.asarray(mask[0]) for p, mask in prepared.masks.items()}
    lq = _tree_host(split_by_block({f: second.log_q[f][0] for f in inner}, factor_paths, masks, blocks))
    weights = {p: _finite(lp[p] - lq[p]).reshape(n, m, -1) for p in blocks}
    return weights, lp["outer"].reshape(n, m)[:, 0], second


def _level_diagnostics(inner_log_w: dict, blocks, real: dict, prepared: PreparedData) -> dict:
    """Per block plate: the worst group's median Pareto k̂ (over global draws) of its inner weights.

    ``inner_log_w[plate]`` is ``(globals, draws, n_block)``: each group's log
    weights p(θ_j, y_j | φ) / q(θ_j | φ, y_j) at a few global draws φ.
    """
    levels = {}
    for p in blocks:
        w = inner_log_w[p]
        khats = np.array([np.median([psis(w[s, :, j])[1] for s in range(w.shape[0])]) for j in real[p]])
        ess = np.array([np.mean(relative_ess(w[:, :, j], axis=1)) for j in real[p]])
        khats = np.where(np.isnan(khats), np.inf, khats)
        worst = int(np.argmax(khats))
        levels[p] = {"khat": float(khats[worst]), "relative_ess": float(np.min(ess)),
                     "worst": str(prepared.labels[p][worst])}
    return levels


def _rng(key) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint32).tolist())


def _lead(tree):
    """Put back the leading data-set axis the samplers use: ``(N, ...)`` → ``(1, N, ...)``."""
    if isinstance(tree, dict):
        return {k: _lead(v) for k, v in tree.items()}
    return np.asarray(tree)[None]
