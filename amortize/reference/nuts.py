"""NumPyro NUTS on the user's program, returned in amortize's DataTree layout.

The program runs on the data at its real sizes; ragged plates are padded and
their padded observations masked (:mod:`amortize.replay`), so NUTS and the
amortizer see exactly the same joint density. The result has the same groups,
dims and coords as :meth:`amortize.Amortizer.sample`, plus ``sample_stats``
(divergences, tree depth, step size), so every diagnostic and comparison
takes either.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping

import jax
import numpy as np
from numpyro import handlers
from numpyro.diagnostics import split_gelman_rubin
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution, constraints
from numpyro.infer import MCMC, NUTS, init_to_median
from numpyro.infer.reparam import LocScaleReparam

from amortize import __version__
from amortize.convert import padded_from_prepared, to_datatree
from amortize.data import prepare_data, take_instances
from amortize.graph import graph_for
from amortize.replay import masked_program, program_arguments
from amortize.simulate import to_canonical

__all__ = ["nuts", "ReferenceWarning", "RHAT_THRESHOLD"]

#: Largest split R-hat a reference run may have to count as converged.
RHAT_THRESHOLD = 1.01


class ReferenceWarning(UserWarning):
    """The reference sampler did not converge (R-hat above 1.01 or divergent transitions)."""


def nuts(model: Callable, data: Mapping[str, Any], *, index: Mapping[str, Any] | None = None,
         coords: Mapping[str, Any] | None = None, num_warmup: int = 1000, num_samples: int = 1000,
         num_chains: int = 4, seed: int = 0, target_accept_prob: float = 0.8,
         max_tree_depth: int = 10, chain_method: str = "vectorized", reparam: str | Mapping | None = None,
         init_strategy: Callable | None = None, progress: bool = False):
    """Sample the posterior of ``model`` given ``data`` with NumPyro's NUTS.

    Parameters
    ----------
    model : callable
        The same NumPyro program given to :func:`amortize.compile`.
    data : mapping of site → values
        Any form :meth:`Amortizer.sample` accepts (rectangular, ragged, long with ``index``).
    num_warmup, num_samples : int
        Per chain.
    num_chains : int
    seed : int
    target_accept_prob, max_tree_depth : NUTS settings.
    chain_method : {"vectorized", "sequential", "parallel"}
        How NumPyro runs the chains (vectorized suits small models on a CPU).
    reparam : "noncentered", mapping of site → numpyro Reparam, or None
        Sample a reparametrized version of the same joint density, as
        ``numpyro.handlers.reparam`` does: ``"noncentered"`` decenters every
        local latent whose prior has real support and ``loc`` and ``scale``
        parameters (Normal, StudentT, Cauchy, ...: ``theta = loc + scale * z``),
        which removes the funnel a small group-level scale gives the centered
        program. The posterior returned is still
        that of the program's own sites.
    init_strategy : callable, optional
        A NumPyro init strategy (default ``init_to_median(num_samples=15)``).
        Programs whose density is zero at prior medians need one, e.g. a
        diffusion model whose non-decision time must start below every
        subject's fastest response (``init_to_value(values={"ndt": ...})``,
        with the shape of the site in the program: ``(subjects, 1)``).
    progress : bool

    Returns
    -------
    xarray.DataTree
        ``posterior`` ``(chain, draw, <plate>, ...)``, ``observed_data`` and
        ``sample_stats`` (``diverging``, ``tree_depth``, ``step_size``). The
        posterior group's attrs hold ``max_rhat``, ``divergences`` and
        ``converged`` (R-hat at most 1.01 for every parameter and no divergences).

    Warns
    -----
    ReferenceWarning
        When the run did not converge; comparisons flag it too.
    """
    graph = graph_for(model, list(data))
    prepared = prepare_data(graph, data, index=index, coords=coords)
    padded = padded_from_prepared(prepared, graph)
    if isinstance(reparam, str) and reparam != "noncentered":
        raise ValueError(f"nuts(reparam={reparam!r}): use 'noncentered', a mapping of site name → "
                         f"numpyro Reparam (e.g. {{'theta': LocScaleReparam(0)}}), or None.")
    program = masked_program(graph, padded)
    if reparam is not None:
        config = _noncentered(graph, padded) if reparam == "noncentered" else dict(reparam)
        program = handlers.reparam(program, config=config)
    kernel = NUTS(program, target_accept_prob=target_accept_prob,
                  max_tree_depth=max_tree_depth, init_strategy=init_strategy or init_to_median(num_samples=15))
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=chain_method, progress_bar=progress)
    mcmc.run(jax.random.key(seed), extra_fields=("diverging", "num_steps", "adapt_state.step_size"),
             **program_arguments(graph, padded))
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
    divergences = int(diverging.sum())
    worst = max(max_rhat.values()) if max_rhat else 1.0
    converged = bool(worst <= RHAT_THRESHOLD and divergences == 0)
    tree = to_datatree(draws, prepared, graph, num_chains=num_chains, groups={"sample_stats": stats},
                       attrs={"inference_library_version": __version__})
    tree["posterior"].attrs.update(
        reference="nuts", max_rhat=worst, divergences=divergences, converged=int(converged),
        num_warmup=num_warmup, reparam=str(reparam), rhat_by_site=str({k: round(v, 4) for k, v in max_rhat.items()}))
    if not converged:
        warnings.warn(
            f"The NUTS reference did not converge: max R-hat {worst:.3f} (threshold "
            f"{RHAT_THRESHOLD}), {divergences} divergent transitions. Run more warm-up "
            f"(num_warmup), raise target_accept_prob, or reparametrize before trusting it.",
            ReferenceWarning, stacklevel=2)
    return tree


def _noncentered(graph, padded) -> dict[str, LocScaleReparam]:
    """Non-centering reparametrizers for every local latent with a location-scale prior.

    A local site (inside a plate) whose distribution, once plate expansion is
    looked through, has real support and ``loc`` and ``scale`` parameters
    (Normal, StudentT, Cauchy, Laplace, ...) gets ``LocScaleReparam(0)``: NUTS
    then moves ``z = (theta - loc) / scale`` and the program's ``theta`` is a
    deterministic function of it. Other sites are left as written.
    """
    trace = handlers.trace(handlers.seed(masked_program(graph, padded), 0)).get_trace(
        **program_arguments(graph, padded))
    config = {}
    for name in graph.latent_names:
        if not graph.sites[name].path:
            continue
        fn = trace[name]["fn"]
        while isinstance(fn, (ExpandedDistribution, Independent, MaskedDistribution)):
            fn = fn.base_dist
        params = set(getattr(fn, "arg_constraints", {}))
        support = fn.support.base_constraint if isinstance(fn.support, constraints.independent) else fn.support
        if {"loc", "scale"} <= params and support is constraints.real:
            config[name] = LocScaleReparam(0, shape_params=tuple(sorted(params - {"loc", "scale"})))
    return config
