"""One data set's posterior: amortized draws, their certificate, and the chosen refinement.

This is the step between the networks and the DataTree that
:meth:`amortize.Amortizer.sample` takes: draw from the amortizer, weight the
draws by the program's density (:func:`~amortize.refine.weights.importance`),
and, as asked, keep them, resample them (``"psis"``), or hand them to NUTS as
its starting points and mass matrix (``"nuts"``; ``"auto"`` chooses by k̂).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from amortize.prepare import PreparedData, prepare_data
from amortize.padded_program import padded_from_prepared
from amortize.errors import CertificateWarning, RefineError
from amortize.graph import Factorization, ModelGraph
from amortize.infer import constrained, gather_instances
from amortize.refine.chains import draw_chains, summable_chain, summed_log_density
from amortize.refine.density import block_plates, density_arguments, joint_log_density
from amortize.refine.weights import DEFENSIVE, Certificate, chain_sum, importance, plain_weights_first
from amortize.refine.nuts import RHAT_THRESHOLD, draw_covariance, nuts_statistics, warm_nuts, weighted_starts

__all__ = ["Posterior", "posterior_draws", "REFINE_METHODS", "NUTS_DEFAULTS"]

REFINE_METHODS = (None, "psis", "nuts", "auto")

#: Settings of ``refine="nuts"`` (override with ``nuts_options``): for a posterior whose
#: certificate is fine. When it is not, the mass matrix starts from the amortized variances and is
#: adapted, over UNCONFIRMED_WARMUP warm-up steps, unless nuts_options says otherwise.
NUTS_DEFAULTS = {"num_warmup": 200, "target_accept_prob": 0.8, "max_tree_depth": 10,
                 "adapt_mass_matrix": False, "chain_method": "vectorized"}
UNCONFIRMED_WARMUP = 500


@dataclass
class Posterior:
    """Draws of one data set, ready for :func:`amortize.convert.to_datatree`.

    Attributes
    ----------
    draws : dict of site → ``(N, [n_instances], *event)``
    probabilities : dict of group → {indicator: ``(N, [n_instances], classes)``}
    prepared : PreparedData
        The data whose labels and values the tree carries.
    attrs : dict
        For the posterior group: ``refine``, ``refine_reason``, ``certificate_*``, NUTS statistics.
    sample_stats : dict or None
        Per-draw NUTS statistics after ``refine="nuts"``.
    certificate : Certificate or None
    """

    draws: dict
    probabilities: dict
    prepared: PreparedData
    attrs: dict = field(default_factory=dict)
    sample_stats: dict | None = None
    certificate: Certificate | None = None


def _check(refine, nuts_options) -> dict:
    if refine not in REFINE_METHODS:
        raise RefineError(f"refine={refine!r} is not a refinement; use None, 'psis', 'nuts' or 'auto'.")
    options = dict(NUTS_DEFAULTS)
    unknown = set(nuts_options or {}) - set(options)
    if unknown:
        raise RefineError(f"Unknown nuts_options {sorted(unknown)}; the options are {sorted(options)}.")
    options.update(nuts_options or {})
    options["_given"] = tuple(nuts_options or ())
    return options


def _warn(certificate: Certificate, refined: str | None, discrete: bool) -> None:
    levels = "; ".join(f"plate `{p}`: worst local k̂ {lv['khat']:.2f} (instance {lv['worst']})"
                       for p, lv in certificate.levels.items())
    what = ("the importance-resampled draws are not reliable either" if refined == "psis"
            else "the amortized draws may miss posterior mass")
    warnings.warn(
        f"The program's own density does not confirm this posterior: Pareto k̂ {certificate.khat:.2f} "
        f"(threshold {certificate.threshold:.2f}){'; ' + levels if levels else ''}. So {what}. Either "
        f"the networks are under-trained for these data (train longer: fit(time_limit=...)), or the data "
        f"are unlike the training simulations (check their scale and sizes against the priors). "
        + ("NUTS cannot move this program's discrete latents, so training longer is the remedy here."
           if discrete else "For exact draws now, use sample(..., refine='nuts')."),
        CertificateWarning, stacklevel=4)


def posterior_draws(draw, graph: ModelGraph, factorization: Factorization, data: Mapping[str, Any],
                    num_samples: int, seed: int, *, index=None, coords=None, num_chains: int = 4,
                    certify: bool = True, refine: str | None = None, proposals: int | None = None,
                    nuts_options: Mapping[str, Any] | None = None, cache: dict | None = None) -> Posterior:
    """Draw, certify and refine the posterior of one data set (see :meth:`Amortizer.sample`).

    ``draw`` is the amortizer's latent sampler (:func:`amortize.infer.make_latent_sampler`);
    ``cache`` keeps compiled program densities between calls. The networks
    run at the data's own sizes (no padding to the trained maximum), compiled
    once per distinct shape.
    """
    options = _check(refine, nuts_options)
    prepared = prepare_data(graph, data, index=index, coords=coords)
    key = jax.random.key(seed)
    weigh = certify or refine is not None
    if refine in ("psis", "auto"):
        count = max(int(proposals or 4000), num_samples)
    elif weigh:
        count = max(int(proposals or 1000), num_samples)
    else:
        count = num_samples
    # psis weighs draws from the defensive mixture 0.9 q + 0.1 q_2 (bounded weights where q's tails
    # are too light); the certificate of unrefined draws is that of q itself. A program with groups
    # first tries plain weights of draws from q (the mixture in every group's factor would spoil
    # them); the hierarchical weights, where needed, get outer draws from the mixture.
    refining = refine in ("psis", "auto")
    plain_first = plain_weights_first(factorization, block_plates(graph, factorization))
    defensive = DEFENSIVE if refining and not plain_first else None
    outer_proposal = None
    if refining and plain_first:
        def outer_proposal(only):
            return draw(jax.random.fold_in(key, 3), prepared.data, prepared.masks, count, None, DEFENSIVE, only)
    proposal = draw(key, prepared.data, prepared.masks, num_samples if refine is None else count, None, defensive)
    if refine is None and count > num_samples:
        # The draws returned are exactly those of an uncertified call; the certificate weighs
        # them together with more draws of the same q, so that its Pareto fit has enough of them.
        extra = draw(jax.random.fold_in(key, 2), prepared.data, prepared.masks, count - num_samples)
        proposal = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], axis=1), proposal, extra)
    attrs = {"refine": "none"}
    certificate = None
    values, probabilities = proposal.values, proposal.probabilities
    joint_log_weights = None
    if weigh:
        try:
            # Unrefined draws and refine="nuts" resample nothing: the certificate is a verdict.
            result = importance(draw, graph, factorization, prepared, jax.random.fold_in(key, 1),
                                num_draws=count, proposal=proposal, cache=cache, outer_proposal=outer_proposal,
                                resample_to=num_samples if refine in ("psis", "auto") else None)
        except RefineError as error:
            if refine is not None:
                raise
            warnings.warn(f"No certificate for this posterior: {error}", CertificateWarning, stacklevel=3)
            attrs["certificate_method"] = "none"
        else:
            certificate = result.certificate
            joint_log_weights = result.joint_log_weights
            attrs.update(certificate.to_attrs())
            if refine in ("psis", "auto"):
                values, probabilities = result.values, result.probabilities
    discrete = any(graph.sites[n].is_discrete for n in graph.latent_names)
    # A hidden Markov chain the certificate could sum out: NUTS runs on the other latents.
    chain_summed = certificate is not None and certificate.method.endswith("chain summed out")
    if refine is None or refine == "psis":
        if refine == "psis":
            attrs.update(refine="psis", refine_reason="asked for")
        if certificate is not None and not certificate.ok:
            _warn(certificate, refine, discrete)
        if refine is None and certificate is not None and certificate.zero_density > 0:
            warnings.warn(
                f"{certificate.zero_density:.1%} of the amortized draws have density zero under the program "
                f"(outside its support given these data, e.g. a non-decision time above the fastest "
                f"response). refine='psis' gives them weight zero; or train longer.",
                CertificateWarning, stacklevel=3)
        return _finish(values, probabilities, prepared, graph, factorization, num_samples, attrs, certificate)
    if refine == "auto":
        if certificate.ok:
            attrs.update(refine="psis", refine_reason=f"k̂ {certificate.khat:.2f} at most "
                                                      f"{certificate.threshold:.2f}")
            return _finish(values, probabilities, prepared, graph, factorization, num_samples, attrs,
                           certificate)
        if discrete and not chain_summed:
            attrs.update(refine="psis", refine_reason="k̂ above the threshold, but NUTS cannot move "
                                                      "the discrete latents")
            _warn(certificate, "psis", discrete)
            return _finish(values, probabilities, prepared, graph, factorization, num_samples, attrs,
                           certificate)
        attrs.update(refine_reason=f"k̂ {certificate.khat:.2f} above {certificate.threshold:.2f}")
    else:
        attrs.update(refine_reason="asked for")
    return _nuts(proposal.values, joint_log_weights, prepared, graph, factorization, num_samples, seed,
                 num_chains, options, attrs, certificate, cache,
                 summable_chain(graph, factorization) if chain_summed else None)


def _finish(values, probabilities, prepared, graph, factorization, num_samples, attrs, certificate):
    values = {f: np.asarray(v)[:, :num_samples] for f, v in values.items()}
    probabilities = {g: {factorization[f].targets[0]: np.asarray(v)[:, :num_samples] for f, v in ps.items()}
                     for g, ps in probabilities.items()}
    draws = gather_instances(constrained(values, graph, factorization), prepared, graph)
    probabilities = {g: gather_instances(ps, prepared, graph) for g, ps in probabilities.items()}
    return Posterior({n: np.asarray(v) for n, v in draws.items()}, probabilities, prepared, attrs,
                     None, certificate)


def _settle_options(options: dict, certificate) -> bool:
    """True when the certificate confirms q. Otherwise neither is q's covariance to be trusted as it
    is: the caller starts from its diagonal, and unless nuts_options says otherwise the mass matrix
    is adapted over a longer warm-up (a fixed mass matrix from a far-off q made NUTS several times
    slower than a cold run on sleepstudy)."""
    if certificate is not None and certificate.ok:
        return True
    given = set(options.get("_given", ()))
    if "adapt_mass_matrix" not in given:
        options["adapt_mass_matrix"] = True
    if "num_warmup" not in given:
        options["num_warmup"] = UNCONFIRMED_WARMUP
    return False


def _report_run(attrs: dict, options: dict, max_rhat: float, divergences: int, converged: bool) -> None:
    """A NUTS refinement's statistics into the posterior's attributes, and a warning if it did not converge."""
    attrs.update(refine="nuts", max_rhat=max_rhat, divergences=divergences, converged=int(converged),
                 num_warmup=int(options["num_warmup"]))
    if not converged:
        warnings.warn(
            f"refine='nuts' did not converge: max R-hat {max_rhat:.3f}, {divergences} divergent "
            f"transitions. Run more warm-up (nuts_options={{'num_warmup': 1000}}) or raise "
            f"target_accept_prob.", CertificateWarning, stacklevel=5)


def _nuts(values, log_weights, prepared, graph, factorization, num_samples, seed, num_chains, options, attrs,
          certificate, cache, chain=None):
    """``refine="nuts"``: NUTS on the program's density in the networks' unconstrained coordinates,
    started from the amortized draws (chosen by their importance weights) with their covariance as the
    inverse mass matrix, compiled once per padded size and kept in ``cache``.

    With a hidden Markov ``chain`` that can be summed out, NUTS runs on the other latents with the
    chain summed out by the forward algorithm, and each chain is then drawn exactly given each NUTS draw.
    """
    if chain is None:
        discrete = [n for n in graph.latent_names if graph.sites[n].is_discrete]
        if discrete:
            raise RefineError(
                f"refine='nuts' cannot move the discrete latent site(s) {', '.join(discrete)}: NUTS needs them "
                f"summed out of the program. Use refine='psis', which weights the classifier's draws, or run "
                f"amortize.reference.nuts on a marginalized version of the program.")
    padded = padded_from_prepared(prepared, graph)
    moved = [f.name for f in factorization if chain is None or f.name != chain.name]
    draws = {f: np.asarray(values[f])[0] for f in moved}  # (S, *plates, dim), unconstrained packed
    count = next(iter(draws.values())).shape[0]
    shapes = {f: draws[f].shape[1:] for f in moved}
    widths = [int(np.prod(shapes[f])) for f in moved]
    flat = np.concatenate([draws[f].reshape(count, -1) for f in moved], axis=1)

    def unflatten(u, lead=()):
        pieces = jnp.split(u, np.cumsum(widths)[:-1], axis=-1)
        return {f: piece.reshape(lead + shapes[f]) for f, piece in zip(moved, pieces)}

    rng = np.random.default_rng(seed)
    finite = np.all(np.isfinite(flat), axis=1)
    weights = None if log_weights is None else np.where(finite, np.asarray(log_weights), -np.inf)
    start = weighted_starts(count, weights, num_chains, rng)
    mass = draw_covariance(flat)
    if not _settle_options(options, certificate) and mass.ndim == 2:
        mass = np.diag(mass)
    per_chain = int(math.ceil(num_samples / num_chains))
    settings = dict(num_chains=num_chains, num_warmup=int(options["num_warmup"]), num_samples=per_chain,
                    dense=mass.ndim == 2, adapt_mass_matrix=bool(options["adapt_mass_matrix"]),
                    target_accept_prob=float(options["target_accept_prob"]),
                    max_tree_depth=int(options["max_tree_depth"]), chain_method=options["chain_method"])
    key = ("nuts", None if chain is None else chain.name, tuple(sorted(padded.sizes.items())),
           tuple(sorted(settings.items())))
    cache = {} if cache is None else cache
    if key not in cache:
        density = (joint_log_density(graph, factorization, padded.sizes) if chain is None
                   else summed_log_density(graph, factorization, padded.sizes, chain))
        cache[key] = warm_nuts(lambda u, data, masks: density(unflatten(u), data, masks), **settings)
    data, masks = density_arguments(padded)
    sampled, stats = cache[key](jax.random.key(seed), jnp.asarray(flat[start], jnp.float32),
                                jnp.asarray(mass, jnp.float32), data, masks)
    stats, max_rhat, divergences = nuts_statistics(sampled, stats)
    sampled = np.asarray(sampled).reshape(-1, flat.shape[1])
    n = len(sampled)
    new = {f: np.asarray(v) for f, v in unflatten(jnp.asarray(sampled), (n,)).items()}
    probabilities = {}
    if chain is not None:
        placeholder = np.zeros((n,) + np.asarray(values[chain.name]).shape[2:], np.float32)
        summed = chain_sum(graph, factorization, prepared, chain, dict(new, **{chain.name: placeholder}), cache)
        states, filtered, smoothed = draw_chains(np.random.default_rng(seed + 1), summed, np.arange(n))
        new[chain.name] = states[..., None].astype(np.float32)
        probabilities = {"indicator_probabilities": {chain.name: smoothed[None]},
                         "indicator_filtered_probabilities": {chain.name: filtered[None]}}
        attrs.update(refine_chain="summed out by the forward algorithm")
    _report_run(attrs, options, max_rhat, divergences, max_rhat <= RHAT_THRESHOLD and divergences == 0)
    posterior = _finish({f: v[None] for f, v in new.items()}, probabilities, prepared, graph, factorization,
                        num_samples, attrs, certificate)
    return Posterior(posterior.draws, posterior.probabilities, prepared, attrs,
                     {k: v[:num_samples] for k, v in stats.items()}, certificate)
