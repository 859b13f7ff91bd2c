"""The program's own joint density at amortized draws, split into a global part and one part per group.

For importance sampling, the target is the program's joint density of the
latents and the observed data, in the same unconstrained coordinates in which
the networks report log q:

    log p(u, y) = Σ_sites log p(site | parents) + Σ_latents log |det ∂ biject_to(support)(u) / ∂u|

The program runs on the padded data (:mod:`amortize.padded_program`); padded data
instances and padded latent instances are left out of every sum, so the
density is that of the real data set and its real latents.

Hierarchical importance sampling needs the density split by the
conditional-independence structure of the program: every instance of a
top-level plate (a *block*: a group with everything nested inside it) is
conditionally independent of the others given the sites outside all blocks
(the *outer* part: global sites, and any top-level plate that is not a block).
The same split is applied to log q, whose factors respect it by construction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro import handlers

from amortize.padded_program import PaddedPosterior
from amortize.factors import kind_of
from amortize.graph import Factorization, ModelGraph
from amortize.padded_program import masked_program, program_arguments
from amortize.simulate import from_canonical, instance_log_prob

__all__ = ["block_plates", "split_by_block", "log_density_terms", "log_density_function", "joint_log_density",
           "density_arguments"]


def density_arguments(padded: PaddedPosterior) -> tuple[dict, dict]:
    """``(data, masks)`` of one padded data set as the density functions here take them: data float32,
    masks boolean, on the device."""
    return ({n: jnp.asarray(v, jnp.float32) for n, v in padded.data.items()},
            {p: jnp.asarray(m) for p, m in padded.masks.items()})


def block_plates(graph: ModelGraph, factorization: Factorization) -> tuple[str, ...]:
    """Top-level plates whose instances are conditionally independent blocks given the outer sites.

    A top-level plate qualifies when it holds latent factors (otherwise there
    is nothing to integrate per instance) and is not an ordered level (the
    steps of a series depend on each other).
    """
    with_latents = {f.path[0] for f in factorization if f.path}
    return tuple(p for p in graph.children(None)
                 if p in with_latents and not graph.plates[p].ordered)


def split_by_block(per_instance: dict, paths: dict, masks: dict, blocks: tuple[str, ...]) -> dict:
    """Sum masked per-instance terms into the outer part and one part per block instance.

    Parameters
    ----------
    per_instance : dict of name → ``(*lead, *plates)``
        Terms of sites or factors, canonical layout over the name's plates.
    paths : dict of name → plate path
    masks : dict of plate → boolean ``(*plates down to it)`` (broadcast over ``lead``)
    blocks : top-level plates that form blocks.

    Returns
    -------
    dict
        ``"outer"`` → ``(*lead,)`` and, per block plate, ``(*lead, n_plate)``.
    """
    out = {"outer": 0.0} | {p: 0.0 for p in blocks}
    for name, value in per_instance.items():
        path = paths[name]
        n_plates = len(path)
        lead = value.shape[: value.ndim - n_plates]
        if path:
            value = jnp.where(masks[path[-1]], value, 0.0)
        if path and path[0] in blocks:
            out[path[0]] = out[path[0]] + value.reshape(lead + value.shape[len(lead):len(lead) + 1] + (-1,)).sum(-1)
        else:
            out["outer"] = out["outer"] + value.reshape(lead + (-1,)).sum(-1)
    return out


def log_density_terms(graph: ModelGraph, factorization: Factorization, sizes: dict):
    """An unjitted ``(values, data, masks) -> {site: (*plates)}``: each site's log density per instance.

    For one draw (no leading axis): ``values`` of factor → unconstrained packed
    ``(*plates, dim)``, the data and masks as in :func:`log_density_function`.
    A continuous latent's term includes its ``biject_to`` Jacobian; padded
    instances are *not* masked here (callers mask, e.g. :func:`split_by_block`).
    """
    sizes = dict(sizes)

    def terms_of(values, data, masks):
        padded = PaddedPosterior(sizes, masks, {}, data, {}, 1)
        kwargs = program_arguments(graph, padded)
        program = masked_program(graph, padded)
        substituted, jacobians = {}, {}
        for factor in factorization:
            sites, log_dets = kind_of(factor).unpack_and_log_det(values[factor.name], factor, graph)
            substituted.update({name: from_canonical(value, graph.sites[name]) for name, value in sites.items()})
            jacobians.update(log_dets)
        trace = handlers.trace(handlers.seed(handlers.substitute(program, data=substituted), 0)).get_trace(**kwargs)
        terms = {}
        for name, site in graph.sites.items():
            entry = trace[name]
            log_prob = entry["fn"].log_prob(entry["value"])
            if entry.get("scale") is not None:
                log_prob = log_prob * entry["scale"]
            terms[name] = instance_log_prob(log_prob, entry["value"], site) + jacobians.get(name, 0.0)
        return terms

    return terms_of


def log_density_function(graph: ModelGraph, factorization: Factorization, sizes: dict,
                         blocks: tuple[str, ...], exclude: tuple[str, ...] = ()):
    """A jitted ``(values, data, masks) -> {"outer": (N,), plate: (N, n_plate)}``: the program's log joint density.

    Parameters of the returned function
    -----------------------------------
    values : dict of factor → unconstrained packed draws ``(N, *plates, dim)``
        At the padded ``sizes`` (a classifier factor: the class index as a
        float), as :func:`amortize.build.draw_latents` returns them.
    data : dict of data site → canonical ``(*plates, *event)`` (:attr:`PaddedPosterior.data`)
    masks : dict of plate → boolean ``(*plates)`` (:attr:`PaddedPosterior.masks`)

    The density includes the Jacobian of each continuous latent's
    ``biject_to``, so it is a density in the same coordinates as log q. The
    data are arguments, not constants: one compilation serves every data set
    of the same padded sizes. Sites in ``exclude`` are left out (e.g. the
    design covariates, whose density a predictive density does not score).
    """
    paths = {n: s.path for n, s in graph.sites.items()}
    terms_of = log_density_terms(graph, factorization, sizes)

    def one(values, data, masks):
        terms = {n: v for n, v in terms_of(values, data, masks).items() if n not in exclude}
        return split_by_block(terms, paths, masks, blocks)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def joint_log_density(graph: ModelGraph, factorization: Factorization, sizes: dict):
    """A differentiable ``(values, data, masks) -> ()``: log p(u, y) of one draw, the potential of NUTS.

    ``values``, ``data`` and ``masks`` as in :func:`log_density_terms`. Padded
    *data* instances are left out; padded *latent* instances (a ragged level
    below another) keep their conditional prior, as in the masked program
    NumPyro's NUTS runs on: left out, they would be flat directions along
    which a trajectory never turns.
    """
    paths = {n: s.path for n, s in graph.sites.items()}
    data_names = set(graph.data_names)
    terms_of = log_density_terms(graph, factorization, sizes)

    def log_p(values, data, masks):
        total = 0.0
        for name, value in terms_of(values, data, masks).items():
            if name in data_names and paths[name]:
                value = jnp.where(masks[paths[name][-1]], value, 0.0)
            total = total + jnp.sum(value)
        return total

    return log_p
