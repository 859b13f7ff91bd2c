"""Checks a program must pass before it is factorized, with errors that name the site and the fix.

Training ranges that are ranges, what simulation-based training cannot honour
(``numpyro.factor``, observations fixed in the program, ``obs_mask``,
subsampled plates), program arguments amortize never passes, and the
indicator layouts the classifier factors support.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Mapping

from amortize.errors import ModelError, ModelWarning
from amortize.graph.sites import Site
from amortize.program.trace import ProgramTrace, model_size_arguments

__all__ = ["check_sizes", "refuse_unamortizable", "warn_unpassed_arguments", "check_indicators"]


def check_sizes(sizes: Mapping[str, object]) -> dict[str, tuple[int, int]]:
    checked = {}
    for plate, value in sizes.items():
        if isinstance(value, int):
            value = (value, value)
        try:
            low, high = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ModelError(
                f"sizes[{plate!r}] is {value!r}; give a (min, max) pair of integers, "
                f"e.g. sizes={{{plate!r}: (2, 50)}}."
            ) from None
        if not 1 <= low <= high:
            raise ModelError(
                f"sizes[{plate!r}] = ({low}, {high}) is not a valid range; "
                f"need 1 <= min <= max."
            )
        checked[plate] = (low, high)
    return checked


def refuse_unamortizable(trace: ProgramTrace, data: tuple[str, ...]) -> None:
    """Loud errors for what a program can say but simulation-based training cannot honour."""
    if trace.factors:
        names = ", ".join(f"`{n}`" for n in trace.factors)
        raise ModelError(
            f"numpyro.factor site(s) {names} add a term to the program's log density with no generative "
            f"story. amortize learns from simulations of the program, and a factor cannot be simulated: "
            f"training would ignore it and the posterior would be wrong. Write the term as the distribution "
            f"of a data site (`numpyro.sample(name, distribution, obs=...)`), or sample this program with "
            f"NUTS (`amortize.reference.nuts`).")
    for name in trace.masked_observations():
        raise ModelError(
            f"Site `{name}` is written with obs_mask=. amortize simulates whole data sets and conditions on "
            f"every value of a data site, so the mask would do nothing. Drop obs_mask and pass the observed "
            f"values only (ragged sizes carry groups of different sizes).")
    for plate, (size, subsample) in trace.subsampled.items():
        raise ModelError(
            f"Plate `{plate}` subsamples (subsample_size={subsample} of {size}). amortize simulates and "
            f"conditions on whole data sets, so a subsample would train on, and infer from, part of each. "
            f"Remove subsample_size.")
    for name, site in trace.sites.items():
        if site.observed_in_program and name not in data:
            raise ModelError(
                f"Site `{name}` is observed inside the program (obs= a fixed value, not an argument): every "
                f"simulated data set would hold that same value, so nothing could be learned from it. Take it "
                f"as an argument (`{name}=None` … `obs={name}`) and name it in data=[..., '{name}'], or make "
                f"it latent.")


def warn_unpassed_arguments(model, data: tuple[str, ...]) -> None:
    """ModelWarning for program arguments that are neither plate sizes nor data sites."""
    _, others = model_size_arguments(model)
    unpassed = [a for a in others if a not in data]
    if not unpassed:
        return
    defaults = inspect.signature(model).parameters
    listed = ", ".join(f"`{a}` (default {defaults[a].default!r})" for a in unpassed)
    warnings.warn(
        f"Program argument(s) {listed} are neither a plate size nor a data site (data={list(data)}): amortize "
        f"never passes them, so every simulation and every posterior uses the default. If one is observed "
        f"data or a covariate, observe it at a sample site of its name (`numpyro.sample('{unpassed[0]}', "
        f"distribution, obs={unpassed[0]})`) and add it to data=; if the program's structure depends on it "
        f"(`if {unpassed[0]} is not None`), the program compiled is the one with the default.",
        ModelWarning, stacklevel=4)


def check_indicators(sites: Mapping[str, Site]) -> None:
    """What the classifier factors support: one indicator per level, no continuous latents below one."""
    indicators = [s for s in sites.values() if s.role == "latent" and s.is_discrete]
    for site in indicators:
        same_level = [s.name for s in indicators if s.path == site.path]
        if len(same_level) > 1:
            raise ModelError(
                f"Latent sites {', '.join(f'`{n}`' for n in same_level)} are discrete indicators at "
                f"the same level ({site.describe_level()}); amortize infers one indicator per level. "
                f"Combine them into one Categorical over their joint classes.")
        below = [s.name for s in sites.values() if s.role == "latent" and not s.is_discrete
                 and len(s.path) > len(site.path) and s.path[: len(site.path)] == site.path]
        if below:
            raise ModelError(
                f"Continuous latent site `{below[0]}` lives in a plate inside the level of the discrete "
                f"indicator `{site.name}` ({site.describe_level()}); amortize infers indicators after "
                f"the continuous latents of their own and enclosing levels only. Move `{below[0]}` up "
                f"to the level of `{site.name}` or marginalize `{site.name}` out.")
