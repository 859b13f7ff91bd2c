"""NUTS on the program itself: the engine of ``refine="nuts"`` and of the NUTS reference.

:func:`run_nuts` runs NumPyro's NUTS on the masked program at the data's
real (padded) sizes and returns the draws of the real instances with
convergence statistics; :func:`amortize.reference.nuts` wraps it as a cold
reference run. :func:`warm_start` turns amortized draws into what makes a
short warm-up enough: one starting point per chain and the posterior
covariance in NUTS's unconstrained coordinates as a dense inverse mass matrix
(the amortized posterior is usually calibrated but too wide, which a mass
matrix tolerates: the step size absorbs a common scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import numpy as np
from numpyro import handlers
from numpyro.diagnostics import split_gelman_rubin
from numpyro.distributions.transforms import biject_to
from numpyro.infer import MCMC, NUTS, init_to_median

from amortize.padded_program import PaddedPosterior, padded_from_prepared
from amortize.prepare import PreparedData, take_instances
from amortize.errors import RefineError
from amortize.graph import ModelGraph
from amortize.padded_program import masked_program, program_arguments
from amortize.simulate import from_canonical, to_canonical

__all__ = ["NUTSRun", "run_nuts", "run_nuts_on_potential", "warm_start", "weighted_starts", "draw_covariance",
           "RHAT_THRESHOLD"]

#: Largest split R-hat a run may have to count as converged.
RHAT_THRESHOLD = 1.01

#: Largest number of unconstrained dimensions that get a dense mass matrix.
DENSE_LIMIT = 2000


@dataclass(frozen=True)
class NUTSRun:
    """Draws of a NUTS run on the program, in amortize's canonical layout.

    Attributes
    ----------
    draws : dict of site → ``(chains * draws, [n_instances], *event)``
        Real instances only, chains stacked.
    stats : dict of str → ``(chains * draws,)``
        ``diverging``, ``tree_depth``, ``step_size``.
    max_rhat : dict of site → float
    divergences : int
    num_chains : int
    """

    draws: dict
    stats: dict
    max_rhat: dict
    divergences: int
    num_chains: int

    @property
    def worst_rhat(self) -> float:
        return max(self.max_rhat.values()) if self.max_rhat else 1.0

    @property
    def converged(self) -> bool:
        """R-hat at most :data:`RHAT_THRESHOLD` for every site and no divergent transition."""
        return bool(self.worst_rhat <= RHAT_THRESHOLD and self.divergences == 0)


def run_nuts(graph: ModelGraph, prepared: PreparedData, *, seed: int, num_warmup: int, num_samples: int,
             num_chains: int, target_accept_prob: float = 0.8, max_tree_depth: int = 10,
             chain_method: str = "vectorized", reparam_config: dict | None = None,
             init_strategy: Callable | None = None, init_params: dict | None = None,
             inverse_mass_matrix=None, dense_mass=False, adapt_mass_matrix: bool = True,
             progress: bool = False) -> NUTSRun:
    """NUTS on the masked program at ``prepared``'s sizes (``num_samples`` per chain)."""
    padded = padded_from_prepared(prepared, graph)
    program = masked_program(graph, padded)
    if reparam_config:
        program = handlers.reparam(program, config=reparam_config)
    kernel = NUTS(program, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                  init_strategy=init_strategy or init_to_median(num_samples=15),
                  inverse_mass_matrix=inverse_mass_matrix, dense_mass=dense_mass,
                  adapt_mass_matrix=adapt_mass_matrix)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=chain_method, progress_bar=progress)
    mcmc.run(jax.random.key(seed), extra_fields=("diverging", "num_steps", "adapt_state.step_size"),
             init_params=init_params, **program_arguments(graph, padded))
    samples = mcmc.get_samples(group_by_chain=True)
    draws, max_rhat = {}, {}
    for name in graph.latent_names:
        site = graph.sites[name]
        value = np.asarray(samples[name])  # (chains, draws, *batch, *event)
        canonical = np.asarray(jax.vmap(jax.vmap(lambda v, site=site: to_canonical(v, site)))(value))
        where = prepared.instances[site.path[-1]] if site.path else None
        real = take_instances(canonical, where, lead=2)
        rhat = split_gelman_rubin(real) if num_chains > 1 else np.ones(real.shape[2:])
        max_rhat[name] = float(np.nanmax(rhat)) if np.size(rhat) else 1.0
        draws[name] = real.reshape((-1,) + real.shape[2:])
    extra = mcmc.get_extra_fields(group_by_chain=True)
    diverging = np.asarray(extra["diverging"]).reshape(-1)
    stats = {"diverging": diverging,
             "tree_depth": np.floor(np.log2(np.asarray(extra["num_steps"]).reshape(-1) + 1)).astype(int),
             "step_size": np.asarray(extra["adapt_state.step_size"]).reshape(-1)}
    return NUTSRun(draws, stats, max_rhat, int(diverging.sum()), num_chains)


def run_nuts_on_potential(potential, init: np.ndarray, inverse_mass_matrix: np.ndarray, *, seed: int,
                          num_warmup: int, num_samples: int, target_accept_prob: float = 0.8,
                          max_tree_depth: int = 10, chain_method: str = "vectorized",
                          adapt_mass_matrix: bool = True) -> tuple[np.ndarray, dict, float, int]:
    """NUTS on a potential over a flat vector (a program with its discrete latents summed out).

    Parameters
    ----------
    potential : callable ``(D,) -> ()``, minus the log density
    init : ``(chains, D)`` starting points
    inverse_mass_matrix : ``(D, D)`` (dense) or ``(D,)``

    Returns
    -------
    draws : ``(chains * num_samples, D)``
    stats : ``diverging``, ``tree_depth``, ``step_size`` per draw
    max_rhat : float, the worst split R-hat over the D coordinates
    divergences : int
    """
    init = np.asarray(init, np.float32)
    num_chains = init.shape[0]
    dense = np.ndim(inverse_mass_matrix) == 2
    kernel = NUTS(potential_fn=potential, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                  inverse_mass_matrix=np.asarray(inverse_mass_matrix), dense_mass=dense,
                  adapt_mass_matrix=adapt_mass_matrix)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=chain_method, progress_bar=False)
    mcmc.run(jax.random.key(seed), init_params=init if num_chains > 1 else init[0],
             extra_fields=("diverging", "num_steps", "adapt_state.step_size"))
    samples = np.asarray(mcmc.get_samples(group_by_chain=True))  # (chains, draws, D)
    rhat = split_gelman_rubin(samples) if num_chains > 1 else np.ones(samples.shape[-1])
    extra = mcmc.get_extra_fields(group_by_chain=True)
    diverging = np.asarray(extra["diverging"]).reshape(-1)
    stats = {"diverging": diverging,
             "tree_depth": np.floor(np.log2(np.asarray(extra["num_steps"]).reshape(-1) + 1)).astype(int),
             "step_size": np.asarray(extra["adapt_state.step_size"]).reshape(-1)}
    return (samples.reshape((-1, samples.shape[-1])), stats, float(np.nanmax(rhat)), int(diverging.sum()))


def warm_start(graph: ModelGraph, padded: PaddedPosterior, draws: dict, num_chains: int,
               rng: np.random.Generator, log_weights=None) -> tuple[dict, dict]:
    """Starting points and inverse mass matrix for NUTS from amortized draws.

    Parameters
    ----------
    padded : PaddedPosterior
        The data at the sizes NUTS runs at.
    draws : dict of site → constrained canonical ``(S, *plates, *event)``
        Amortized draws at (at least) those sizes; every instance, padded
        ones included (NUTS moves padded latents too, under their prior).
    num_chains : int
    rng : numpy Generator
    log_weights : array ``(S,)``, optional
        Importance log weights of the draws: starting points are drawn in
        proportion to them, so none starts where the program's density is zero
        (a non-decision time above the fastest response, say).

    Returns
    -------
    init_params : dict of site → unconstrained ``(num_chains, *batch, *event)`` in program layout
    inverse_mass_matrix : dict ``{(sites, ...): (D, D) or (D,)}`` in NumPyro's flattening order
        (sorted site names, each raveled); dense up to :data:`DENSE_LIMIT` dimensions.

    Raises
    ------
    RefineError
        A discrete latent (NUTS moves continuous sites only).
    """
    discrete = [n for n in graph.latent_names if graph.sites[n].is_discrete]
    if discrete:
        raise RefineError(
            f"refine='nuts' cannot move the discrete latent site(s) {', '.join(discrete)}: NUTS needs them "
            f"summed out of the program. Use refine='psis', which weights the classifier's draws, or run "
            f"amortize.reference.nuts on a marginalized version of the program."
        )
    unconstrained = {}
    for name in sorted(graph.latent_names):
        site = graph.sites[name]
        value = np.asarray(draws[name])
        value = value[(slice(None),) + tuple(slice(0, padded.sizes[p]) for p in site.path)]
        free = np.asarray(biject_to(site.support).inv(value))
        # A support whose transform changes the event shape (a Cholesky factor of a correlation
        # matrix: (2, 2) → (1,)) has its own unconstrained event.
        event = None if free.shape == value.shape else free.shape[1 + len(site.path):]
        unconstrained[name] = np.asarray(from_canonical(free, site, event))  # (S, *batch, *unconstrained event)
    num_draws = next(iter(unconstrained.values())).shape[0]
    start = weighted_starts(num_draws, log_weights, num_chains, rng)
    init_params = {n: v[start] for n, v in unconstrained.items()}
    flat = np.concatenate([v.reshape(num_draws, -1) for v in unconstrained.values()], axis=1)
    return init_params, {tuple(sorted(graph.latent_names)): draw_covariance(flat)}


def weighted_starts(num_draws: int, log_weights, num_chains: int, rng: np.random.Generator) -> np.ndarray:
    """``num_chains`` draw indices, in proportion to the importance weights (uniform without them)."""
    probability = None
    if log_weights is not None:
        lw = np.where(np.isfinite(log_weights), log_weights, -np.inf)
        if not np.any(np.isfinite(lw)):
            raise RefineError("No amortized draw has a finite density under the program; NUTS cannot start "
                              "from them. The data are probably far outside the training simulations.")
        probability = np.exp(lw - lw.max())
        probability = probability / probability.sum()
    return rng.choice(num_draws, size=num_chains, replace=int(np.sum(probability > 0)) < num_chains
                      if probability is not None else num_draws < num_chains, p=probability)


def draw_covariance(flat: np.ndarray) -> np.ndarray:
    """Covariance of the finite rows of unconstrained draws ``(S, D)``: dense ``(D, D)`` (jittered) up to
    :data:`DENSE_LIMIT` dimensions, its diagonal ``(D,)`` beyond."""
    flat = flat[np.all(np.isfinite(flat), axis=1)]
    if len(flat) < 2:
        raise RefineError("The amortized draws are not finite; NUTS cannot start from them. The data are "
                          "probably far outside the training simulations: check the certificate.")
    if flat.shape[1] <= DENSE_LIMIT:
        covariance = np.atleast_2d(np.cov(flat, rowvar=False))
        return covariance + 1e-6 * np.mean(np.diag(covariance)) * np.eye(len(covariance))
    return np.var(flat, axis=0) + 1e-8
