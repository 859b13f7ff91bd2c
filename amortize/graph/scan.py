"""The ordered (time) level a program's ``numpyro.contrib.control_flow.scan`` forms, and the real
parents of the sites inside it."""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax.numpy as jnp
from numpyro import handlers

from amortize.errors import ModelError
from amortize.graph.dependence import output_dependencies
from amortize.program.trace import ProgramTrace, size_argument

__all__ = ["scan_level", "scan_parents"]


def scan_level(first: ProgramTrace, second: ProgramTrace, ranges: Mapping[str, tuple[int, int]]):
    """The ordered level a program's ``scan`` forms, or None.

    Returns ``(level name, enclosing plates outermost first, scanned site names)``.

    A scan's sites carry its steps on a leading axis. Its length must be a
    model argument ``n_<level>`` with a training range (and no plate of that
    name): the level whose size moves the leading axis from the first trace
    (sizes at their maxima) to the second (maxima + 1) is the scan's.
    """
    scanned = [n for n, s in first.sites.items() if s.in_scan]
    if not scanned:
        return None
    lengths = {(first.sites[n].batch_shape[:1], second.sites[n].batch_shape[:1]) for n in scanned}
    stacks = {tuple(f.name for f in first.sites[n].plates) for n in scanned}
    names = ", ".join(f"`{n}`" for n in scanned)
    if len(lengths) > 1 or len(stacks) > 1:
        raise ModelError(
            f"Sites {names} are inside `scan`s of different lengths or plates. amortize "
            f"reads one `numpyro.contrib.control_flow.scan` per program as its ordered "
            f"(time) level; put every step's sites in one scan inside the same plates."
        )
    (length, longer), = lengths
    candidates = [p for p, (_, high) in ranges.items()
                  if p not in first.plate_sizes and length == (high,) and longer == (high + 1,)]
    if len(candidates) != 1:
        free = [p for p in ranges if p not in first.plate_sizes]
        raise ModelError(
            f"Sites {names} are inside a `numpyro.contrib.control_flow.scan` of length "
            f"{length[0] if length else '?'}. amortize reads a scan as an ordered (time) level "
            f"whose number of steps is a model argument: write "
            f"`scan(step, init, xs, length=n_time)` (all the steps, the first included) "
            f"and give sizes={{'time': (min, max)}}"
            + (f"; sizes= names {', '.join(f'`{p}`' for p in free)}, but the scan's length "
               f"does not follow `n_{free[0]}`." if free else ".")
        )
    return candidates[0], next(iter(stacks)), scanned


def scan_parents(model, ranges, sites: dict, scanned) -> dict:
    """Sites inside a scan with the latents their density really depends on.

    NumPyro's provenance tracking sees a scan's carry as one value, so it
    reports every site of the scan as depending on every latent that enters
    the carry (a covariate drawn from a fixed design would look like a
    response). The data flow of each scanned site's log density, read from
    its jaxpr with the scan's carry iterated to a fixed point
    (:mod:`amortize.graph.dependence`), tells instead; being structural, it
    cannot be fooled by a ``where``, ``clip`` or ReLU whose gradient happens
    to vanish at one draw.
    """
    # At least four steps and instances: the first steps of a series often
    # follow their own start distribution, which depends on no latent.
    kwargs = {size_argument(p): max(high, 4) for p, (_, high) in ranges.items()}
    # Discrete latents keep the parents NumPyro reports.
    latents = sorted(n for n, s in sites.items() if s.role == "latent" and not s.is_discrete)
    prior = handlers.trace(handlers.seed(model, 0)).get_trace(**kwargs)
    data = {n: prior[n]["value"] for n in scanned if n in sites and sites[n].role == "data"}
    # Latent states along the scan (a Markov indicator) are held at their prior draw.
    states = {n: prior[n]["value"] for n in scanned if n not in data}
    targets = sorted(n for n in scanned if n in sites)

    def log_densities(values):
        run = handlers.trace(handlers.substitute(handlers.seed(model, 1), data={**values, **states}))
        trace = run.get_trace(**kwargs, **data)
        return {n: jnp.sum(trace[n]["fn"].log_prob(trace[n]["value"])) for n in targets}

    # Leaves of a dict are in sorted-key order: inputs `latents`, outputs `targets`.
    dependencies = output_dependencies(log_densities, {n: prior[n]["value"] for n in latents})
    out = dict(sites)
    for name, inputs in zip(targets, dependencies):
        used = {latents[i] for i in inputs}
        parents = tuple(p for p in sites[name].parents if p not in latents or p in used)
        out[name] = dataclasses.replace(sites[name], parents=parents)
    return out
