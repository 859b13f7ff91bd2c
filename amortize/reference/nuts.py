"""NumPyro NUTS on the user's program, returned in amortize's DataTree layout.

The program runs on the data at its real sizes; ragged plates are padded and
their padded observations masked (:mod:`amortize.padded_program`), so NUTS and the
amortizer see exactly the same joint density. The result has the same groups,
dims and coords as :meth:`amortize.Amortizer.sample`, plus ``sample_stats``
(divergences, tree depth, step size), so every diagnostic and comparison
takes either.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping

from numpyro import handlers
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution, constraints
from numpyro.infer.reparam import LocScaleReparam

from amortize._version import __version__
from amortize.convert import to_datatree, with_deterministics
from amortize.padded_program import padded_from_prepared
from amortize.prepare import prepare_data
from amortize.graph import ModelGraph, graph_for
from amortize.refine.nuts import RHAT_THRESHOLD, run_nuts
from amortize.padded_program import masked_program, program_arguments

__all__ = ["nuts", "ReferenceWarning", "RHAT_THRESHOLD"]


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
    model : callable or Amortizer
        The same NumPyro program given to :func:`amortize.compile`, or the
        amortizer itself (its program, as compiled: needed for a program
        compiled from a call, ``compile(model, args=..., kwargs=...)``).
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
    if isinstance(getattr(model, "graph", None), ModelGraph):  # an Amortizer: NUTS on its program
        model = model.graph.model
    graph = graph_for(model, list(data))
    prepared = prepare_data(graph, data, index=index, coords=coords)
    padded = padded_from_prepared(prepared, graph)
    if isinstance(reparam, str) and reparam != "noncentered":
        raise ValueError(f"nuts(reparam={reparam!r}): use 'noncentered', a mapping of site name → "
                         f"numpyro Reparam (e.g. {{'theta': LocScaleReparam(0)}}), or None.")
    config = None
    if reparam is not None:
        config = _noncentered(graph, padded) if reparam == "noncentered" else dict(reparam)
    run = run_nuts(graph, prepared, seed=seed, num_warmup=num_warmup, num_samples=num_samples,
                   num_chains=num_chains, target_accept_prob=target_accept_prob,
                   max_tree_depth=max_tree_depth, chain_method=chain_method, reparam_config=config,
                   init_strategy=init_strategy, progress=progress)
    tree = to_datatree(with_deterministics(run.draws, prepared, graph), prepared, graph, num_chains=num_chains, groups={"sample_stats": run.stats},
                       attrs={"inference_library_version": __version__})
    tree["posterior"].attrs.update(
        reference="nuts", max_rhat=run.worst_rhat, divergences=run.divergences, converged=int(run.converged),
        num_warmup=num_warmup, reparam=str(reparam),
        rhat_by_site=str({k: round(v, 4) for k, v in run.max_rhat.items()}))
    if not run.converged:
        warnings.warn(
            f"The NUTS reference did not converge: max R-hat {run.worst_rhat:.3f} (threshold "
            f"{RHAT_THRESHOLD}), {run.divergences} divergent transitions. Run more warm-up "
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
