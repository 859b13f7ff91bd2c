"""NUTS on the program itself: the engine of ``refine="nuts"`` and of the NUTS reference.

:func:`run_nuts` runs NumPyro's NUTS on the masked program at the data's
real (padded) sizes and returns the draws of the real instances with
convergence statistics; :func:`amortize.reference.nuts` wraps it as a cold
reference run. :func:`warm_nuts` is ``refine="nuts"``'s engine: NumPyro's NUTS
kernel on a potential whose data are arguments, compiled once per padded
shape, started from amortized draws with their covariance as a dense inverse
mass matrix (:func:`weighted_starts`, :func:`draw_covariance`; the amortized
posterior is usually calibrated but too wide, which a mass matrix tolerates:
the step size absorbs a common scale), so that a short warm-up is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import numpy as np
from numpyro import handlers
from numpyro.diagnostics import split_gelman_rubin
from numpyro.infer import MCMC, NUTS, init_to_median
from numpyro.infer.hmc import hmc

from amortize.padded_program import padded_from_prepared
from amortize.prepare import PreparedData, take_instances
from amortize.errors import RefineError
from amortize.graph import ModelGraph
from amortize.padded_program import masked_program, program_arguments
from amortize.simulate import to_canonical

__all__ = ["NUTSRun", "run_nuts", "warm_nuts", "draw_statistics", "nuts_statistics", "weighted_starts", "draw_covariance",
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
    stats = draw_statistics(extra["diverging"], extra["num_steps"], extra["adapt_state.step_size"])
    return NUTSRun(draws, stats, max_rhat, int(stats["diverging"].sum()), num_chains)


def warm_nuts(log_density: Callable, *, num_chains: int, num_warmup: int, num_samples: int, dense: bool,
              adapt_mass_matrix: bool, target_accept_prob: float = 0.8, max_tree_depth: int = 10,
              chain_method: str = "vectorized") -> Callable:
    """A compiled NUTS run on a flat potential whose data are arguments: one compilation per shape.

    NumPyro's ``MCMC`` traces and compiles the program anew for every data
    set; this runs its NUTS kernel (``numpyro.infer.hmc.hmc``) inside one
    ``jax.jit`` with the data as arguments, so that every further data set of
    the same padded sizes samples at once (keep the returned function, e.g. in
    the amortizer's cache).

    Parameters
    ----------
    log_density : callable ``(u (D,), data, masks) -> ()``
        The program's log density in the coordinates NUTS moves in.
    num_chains, num_warmup, num_samples : int
        ``num_samples`` per chain, after ``num_warmup`` warm-up steps (step
        size always adapted; the mass matrix if ``adapt_mass_matrix``).
    dense : bool
        Whether the inverse mass matrix given to the run is ``(D, D)`` or ``(D,)``.
    chain_method : {"vectorized", "sequential"}

    Returns
    -------
    callable ``(key, init (num_chains, D), inverse_mass_matrix, data, masks) -> (draws, stats)``
        draws ``(num_chains, num_samples, D)``; stats ``diverging``, ``num_steps``,
        ``step_size``, each ``(num_chains, num_samples)``.
    """
    if chain_method not in ("vectorized", "sequential"):
        raise RefineError(f"refine='nuts' runs its chains 'vectorized' or 'sequential', not {chain_method!r}: "
                          f"set nuts_options={{'chain_method': 'vectorized'}}.")

    def run(key, init, inverse_mass_matrix, data, masks):
        def potential(u):
            return -log_density(u, data, masks)

        init_kernel, sample_kernel = hmc(potential_fn=potential, algo="NUTS")

        def chain(args):
            chain_key, z = args
            state = init_kernel(z, num_warmup, inverse_mass_matrix=inverse_mass_matrix,
                                adapt_mass_matrix=adapt_mass_matrix, dense_mass=dense,
                                target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                                rng_key=chain_key)

            def step(state, _):
                state = sample_kernel(state)
                return state, (state.z, {"diverging": state.diverging, "num_steps": state.num_steps,
                                         "step_size": state.adapt_state.step_size})

            _, out = jax.lax.scan(step, state, None, length=num_warmup + num_samples)
            return jax.tree_util.tree_map(lambda a: a[num_warmup:], out)

        keys = jax.random.split(key, num_chains)
        if chain_method == "vectorized":
            return jax.vmap(chain)((keys, init))
        return jax.lax.map(chain, (keys, init))

    return jax.jit(run)


def draw_statistics(diverging, num_steps, step_size) -> dict:
    """NUTS's per-draw statistics, each ``(chains, draws)``, as ``(chains * draws,)`` arrays: ``diverging``,
    ``tree_depth`` (from the number of leapfrog steps) and ``step_size``."""
    return {"diverging": np.asarray(diverging).reshape(-1),
            "tree_depth": np.floor(np.log2(np.asarray(num_steps).reshape(-1) + 1)).astype(int),
            "step_size": np.asarray(step_size).reshape(-1)}


def nuts_statistics(draws: np.ndarray, stats: dict) -> tuple[dict, float, int]:
    """Per-draw statistics (:func:`draw_statistics`), the worst split R-hat over the D coordinates of
    ``draws`` ``(chains, draws, D)`` and the number of divergent transitions."""
    draws = np.asarray(draws)
    rhat = split_gelman_rubin(draws) if draws.shape[0] > 1 else np.ones(draws.shape[-1])
    flat = draw_statistics(stats["diverging"], stats["num_steps"], stats["step_size"])
    return flat, float(np.nanmax(rhat)), int(flat["diverging"].sum())


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
