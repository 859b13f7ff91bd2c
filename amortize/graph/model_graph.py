"""Building a program's :class:`~amortize.graph.sites.ModelGraph` from two traces, and checking it.

The program is traced at the largest trained sizes and once more with every
plate one larger (what follows an argument, what is fixed); each site gets
its level, the axes of its plates and its event; the checks of
:mod:`amortize.graph.checks` and the scan analysis of
:mod:`amortize.graph.scan` run on the way.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Mapping, Sequence

from amortize.errors import ModelError
from amortize.graph.checks import check_indicators, check_sizes, refuse_unamortizable, warn_unpassed_arguments
from amortize.graph.scan import scan_level, scan_parents
from amortize.graph.sites import ModelGraph, Plate, Site
from amortize.program.trace import (
    ProgramTrace,
    SiteTrace,
    model_size_arguments,
    size_argument,
    trace_program,
    unconstrained_event_shape,
)

__all__ = ["Plate", "Site", "ModelGraph", "build_graph", "graph_for", "resolve_graph", "covariate_names",
           "response_names"]


def _trace_with_sizes(model, sizes):
    return trace_program(model, {size_argument(p): n for p, n in sizes.items()})


def _plate_paths(trace: ProgramTrace) -> dict[str, tuple[str, ...]]:
    paths: dict[str, tuple[str, ...]] = {}

    def path_of(name):
        if name not in paths:
            parent = trace.plate_parents[name]
            paths[name] = (path_of(parent) if parent else ()) + (name,)
        return paths[name]

    for name in trace.plate_parents:
        path_of(name)
    return paths


def _site_layout(site: SiteTrace, plate_paths, plate_sizes, ordered: str | None = None,
                 longer: SiteTrace | None = None, fixed=()) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """``(plates, their axes, folded axes)``: folded axes are batch axes outside every plate, of a size
    that stays the same in the trace ``longer`` (every plate one larger), and the axes of ``fixed``
    plates (fixed-size plates over parameters); they join the event."""
    frames = [f for f in site.plates if f.name not in fixed]
    site = dataclasses.replace(site, plates=tuple(frames))
    path = tuple(f.name for f in site.plates)
    if path and plate_paths[path[-1]] != path:
        expected = " > ".join(plate_paths[path[-1]])
        raise ModelError(
            f"Site `{site.name}` is inside plates {' > '.join(path)}, but plate "
            f"`{path[-1]}` is nested as {expected} elsewhere in the program. "
            f"amortize needs plates that nest as a tree (crossed plates are not "
            f"supported); put every site of `{path[-1]}` inside the same outer plates."
        )
    axes = []
    for frame in site.plates:
        axis = site.batch_ndim + frame.dim
        if axis < 0 or site.batch_shape[axis] != plate_sizes[frame.name]:
            raise ModelError(
                f"Site `{site.name}` has batch shape {site.batch_shape} but plate "
                f"`{frame.name}` (dim {frame.dim}) expects size {plate_sizes[frame.name]} "
                f"there; declare the site inside `with numpyro.plate('{frame.name}', "
                f"n_{frame.name})` without broadcasting it away."
            )
        axes.append(axis)
    if site.in_scan:  # the scan's steps: the leading axis, innermost level
        path, axes = path + (ordered,), axes + [0]
    folded = []
    for axis, extent in enumerate(site.batch_shape):
        if axis not in axes and extent != 1:
            # A batch axis outside every plate (HalfNormal(jnp.ones(2)) without to_event): part of the
            # event, as NUTS treats it, as long as its size is fixed.
            if longer is None or longer.batch_shape[axis] != extent:
                raise ModelError(
                    f"Site `{site.name}` has batch shape {site.batch_shape}: axis {axis} "
                    f"(size {extent}) belongs to no plate and its size changes with the plate sizes. "
                    f"Wrap the site in the `numpyro.plate` whose instances that axis holds."
                )
            folded.append(axis)
    return path, tuple(axes), tuple(folded)


def build_graph(
    model: Callable,
    data: Sequence[str],
    sizes: Mapping[str, object],
    *,
    amortized: bool = True,
) -> ModelGraph:
    """Trace ``model`` and check that amortize can factorize it.

    Parameters
    ----------
    model : callable
        NumPyro program whose plate ``P`` takes its size from argument ``n_P``.
    data : sequence of str
        Names of the observed (data) sites.
    sizes : mapping of str to (int, int)
        Training range (min, max) of every plate's size.
    amortized : bool
        Refuse what cannot be amortized (``numpyro.factor``, observations
        fixed inside the program, ``obs_mask``, subsampled plates); False
        for a graph that only lays out data for NUTS.

    Returns
    -------
    ModelGraph

    Raises
    ------
    ModelError
        With the site or plate at fault and the fix.
    """
    if isinstance(data, str):
        data = [data]
    data = tuple(data)
    if not data:
        raise ModelError("data=[] names no data site; pass the observed sites, e.g. data=['y'].")
    size_args, _ = model_size_arguments(model)
    ranges = check_sizes(sizes)
    for plate in ranges:
        if size_argument(plate) not in size_args:
            raise ModelError(
                f"sizes names plate `{plate}`, but the program has no argument "
                f"`{size_argument(plate)}`. amortize passes the size of plate `P` as "
                f"the keyword argument `n_P`: write `def model({size_argument(plate)}, ...)` "
                f"and `numpyro.plate('{plate}', {size_argument(plate)})`."
            )
    parameters = inspect.signature(model).parameters
    for arg in size_args:
        plate = arg[2:]
        if plate not in ranges and parameters[arg].default is inspect.Parameter.empty:
            raise ModelError(
                f"Model argument `{arg}` is the size of plate `{plate}`, but sizes= has no "
                f"entry for it; add sizes={{'{plate}': (min, max)}}."
            )
    first = _trace_with_sizes(model, {p: r[1] for p, r in ranges.items()})
    if amortized:
        refuse_unamortizable(first, data)
        warn_unpassed_arguments(model, data)
    second = _trace_with_sizes(model, {p: r[1] + 1 for p, r in ranges.items()})
    fixed = _fixed_plates(first, second, ranges, data)
    for plate in first.plate_sizes:
        arg = size_argument(plate)
        if plate in fixed:
            continue
        if plate not in ranges:
            if arg not in size_args:
                raise ModelError(
                    f"Plate `{plate}` has size {first.plate_sizes[plate]} fixed in the "
                    f"program. amortize needs its size as the model argument `{arg}`: "
                    f"write `numpyro.plate('{plate}', {arg})`, add `{arg}` to the "
                    f"model's arguments and give sizes={{'{plate}': (min, max)}}."
                )
            raise ModelError(
                f"Plate `{plate}` has no training range; add sizes={{'{plate}': (min, max)}}."
            )
        if (first.plate_sizes[plate], second.plate_sizes[plate]) != (ranges[plate][1], ranges[plate][1] + 1):
            raise ModelError(
                f"Plate `{plate}` does not take its size from the argument `{arg}` "
                f"(it had size {first.plate_sizes[plate]} when `{arg}`={ranges[plate][1]}). "
                f"Write `numpyro.plate('{plate}', {arg})`."
            )
    scan = scan_level(first, second, ranges)
    ordered = scan[0] if scan else None
    for plate in ranges:
        if plate not in first.plate_sizes and plate != ordered:
            raise ModelError(
                f"sizes names plate `{plate}`, but the program has no such plate "
                f"(its plates: {sorted(first.plate_sizes) or 'none'})."
            )
    for name in data:
        if name not in first.sites:
            raise ModelError(
                f"Unknown data site `{name}`: the program has no sample site of that name "
                f"(its sample sites: {', '.join(first.sites)})."
            )

    if "global" in first.plate_sizes:
        raise ModelError(
            "Plate `global` clashes with the name amortize gives the factor of the "
            "global latents; rename the plate."
        )
    plate_paths = {n: p for n, p in _plate_paths(first).items() if n not in fixed}
    plates = {
        name: Plate(name, first.plate_parents[name], plate_paths[name], ranges[name])
        for name in sorted(plate_paths, key=lambda n: len(plate_paths[n]))
    }
    if scan:
        _, enclosing, scanned = scan
        parent = enclosing[-1] if enclosing else None
        plates[ordered] = Plate(ordered, parent, enclosing + (ordered,), ranges[ordered], ordered=True)
        for name in scanned:
            markov_indicator = first.sites[name].is_discrete and first.sites[name].has_finite_support
            if name not in data and not first.sites[name].observed_in_program and not markov_indicator:
                where = f"into plate `{parent}`" if parent else "to the global level"
                raise ModelError(
                    f"Latent site `{name}` is inside the scan that forms the ordered level "
                    f"`{ordered}`. amortize infers latents of enclosing levels given a "
                    f"series, and discrete states along it (hidden Markov chains), not "
                    f"continuous states along it (yet): make `{name}` a data site, or move "
                    f"it out of the scan {where}."
                )
    sites: dict[str, Site] = {}
    for name, site in first.sites.items():
        is_data = name in data
        if not is_data and site.observed_in_program:
            continue  # a fixed observation that no data set changes: nothing to infer
        path, axes, folded = _site_layout(site, plate_paths, first.plate_sizes, ordered, second.sites.get(name),
                                          fixed)
        where = f"plate `{path[-1]}`" if path else "the global level"
        if not is_data:
            if site.is_discrete:
                if not site.has_finite_support:
                    raise ModelError(
                        f"Latent site `{name}` ({site.distribution}, at {where}) is discrete "
                        f"with infinite support, which amortize cannot infer; make it a data "
                        f"site or replace it by a continuous or finite discrete latent."
                    )
                if site.num_classes is None:
                    raise ModelError(
                        f"Latent site `{name}` ({site.distribution}, at {where}) is finite "
                        f"discrete, but its values are not the class indices 0..K-1 with a "
                        f"fixed K (its support is {site.support}). Write it as a Categorical "
                        f"(or Bernoulli) indicator and map the index to the value with "
                        f"`numpyro.deterministic`."
                    )
                if site.event_shape:
                    raise ModelError(
                        f"Latent site `{name}` ({site.distribution}, at {where}) is a discrete "
                        f"site with event shape {site.event_shape}; indicators must be scalar "
                        f"per instance. Put the extra dimension in a plate."
                    )
            if not site.support_is_static:
                raise ModelError(
                    f"Latent site `{name}` ({site.distribution}, at {where}) has a support "
                    f"that depends on other sites. Reparameterize it with a fixed support, "
                    f"e.g. `u ~ Uniform(0, 1)` and `{name} = low + (high - low) * u` as a "
                    f"deterministic."
                )
        # A discrete latent is packed as its class index: one number per instance.
        event_shape = tuple(site.batch_shape[a] for a in folded) + site.event_shape
        if folded and site.is_discrete and not is_data:
            raise ModelError(
                f"Latent site `{name}` ({site.distribution}, at {where}) is a discrete indicator with batch "
                f"shape {site.batch_shape} outside its plates; indicators must be one per instance. Put "
                f"the extra dimension in a plate.")
        unconstrained = () if is_data or site.is_discrete else unconstrained_event_shape(
            site.support, event_shape)
        sites[name] = Site(
            name=name,
            role="data" if is_data else "latent",
            path=path,
            plate_axes=axes,
            batch_ndim=site.batch_ndim,
            event_shape=event_shape,
            unconstrained_shape=unconstrained,
            support=site.support,
            distribution=site.distribution,
            dtype=site.dtype,
            parents=tuple(first.parents.get(name, ())),
            num_classes=None if is_data else site.num_classes,
            folded_axes=folded,
        )
    if scan:
        sites = scan_parents(model, ranges, sites, scan[2])
    for name, site in sites.items():
        for parent in site.parents:
            if parent not in sites:
                continue
            parent_path = sites[parent].path
            if site.path[: len(parent_path)] != parent_path:
                extra = [p for p in parent_path if p not in site.path]
                raise ModelError(
                    f"Site `{name}` ({site.describe_level()}) depends on `{parent}`, which "
                    f"lives inside plate `{extra[0]}` that `{name}` is not in: `{name}` "
                    f"couples the instances of plate `{extra[0]}`, so the posterior does "
                    f"not factorize over them. Move `{name}` inside plate `{extra[0]}` or "
                    f"drop its dependence on `{parent}`. (Rows that pick their group's parameter "
                    f"through an index, `{parent}[idx]`, are read as groups when the program is "
                    f"compiled from a call, `compile(model, args=..., kwargs=...)`, with the index an "
                    f"integer argument numbering the groups 0 .. K-1; see docs/from_mcmc.md.)"
                )
    if not any(s.role == "latent" for s in sites.values()):
        raise ModelError("The program has no latent sites: there is nothing to infer.")
    check_indicators(sites)
    return ModelGraph(model=model, sites=sites, plates=plates, data_names=data,
                      deterministics=_deterministic_sites(first, second, plate_paths))


def _fixed_plates(first: ProgramTrace, second: ProgramTrace, ranges, data) -> dict[str, int]:
    """Plates of a size fixed in the program that hold parameters only (a mixture's ``components``):
    their axis is part of the event of every site inside, as NUTS sees it. A fixed plate with a data
    site or an indicator inside, or with plates nested in it, is left to the usual errors."""
    fixed = {}
    for plate, size in first.plate_sizes.items():
        if plate in ranges or second.plate_sizes.get(plate) != size:
            continue
        inside = [s for s in first.sites.values() if plate in (f.name for f in s.plates)]
        nested = any(parent == plate for parent in first.plate_parents.values())
        if inside and not nested and all(s.name not in data and not s.is_discrete and not s.in_scan
                                         for s in inside):
            fixed[plate] = size
    return fixed


def _deterministic_sites(first: ProgramTrace, second: ProgramTrace, plate_paths) -> dict[str, Site]:
    """Deterministic sites laid out like sample sites: each plate on one axis, the rest a fixed event.

    Left out (they are functions of the draws a user can recompute): values
    whose shape follows a plate that encloses no site of theirs (long-format
    rows gathered from group parameters), values inside a scan, and the
    pieces of ``obs_mask``.
    """
    out = {}
    for name, (frames, shape, dtype) in first.deterministic_layout.items():
        other = second.deterministic_layout.get(name)
        path = tuple(f.name for f in frames)
        if other is None or (path and plate_paths.get(path[-1]) != path):
            continue
        for event_ndim in range(len(shape) + 1):
            batch_ndim = len(shape) - event_ndim
            axes = [batch_ndim + f.dim for f in frames]
            if any(a < 0 or shape[a] != first.plate_sizes[f.name] for a, f in zip(axes, frames)):
                continue
            if any(shape[a] != 1 for a in range(batch_ndim) if a not in axes):
                continue
            event = shape[batch_ndim:]
            if other[1][len(other[1]) - event_ndim:] != event or len(other[1]) != len(shape):
                break  # the event grows with a plate's size: not a per-instance value
            out[name] = Site(name=name, role="deterministic", path=path, plate_axes=tuple(axes),
                             batch_ndim=batch_ndim, event_shape=event, unconstrained_shape=(), support=None,
                             distribution="Deterministic", dtype=dtype, parents=())
            break
    return out


def graph_for(model: Callable, data: Sequence[str]) -> ModelGraph:
    """The graph of ``model`` with data sites ``data``, for use without an amortizer.

    Plate sizes come from the data at run time (NUTS, diagnostics); the
    training range recorded here is a placeholder.
    """
    size_args, _ = model_size_arguments(model)
    graph = build_graph(model, list(data), {arg[2:]: (1, 2) for arg in size_args}, amortized=False)
    return dataclasses.replace(graph, has_training_ranges=False)


def resolve_graph(model, data_names: Sequence[str]) -> ModelGraph:
    """An Amortizer's graph, a ModelGraph itself, or the graph of a NumPyro program."""
    if isinstance(model, ModelGraph):
        return model
    graph = getattr(model, "graph", None)
    if isinstance(graph, ModelGraph):
        return graph
    if callable(model):
        return graph_for(model, data_names)
    raise TypeError(f"Expected an Amortizer, a ModelGraph or a NumPyro program; got {type(model).__name__}.")


def covariate_names(graph: ModelGraph) -> tuple[str, ...]:
    """Data sites whose distribution depends on no latent site (design covariates)."""
    latents = set(graph.latent_names)
    return tuple(n for n in graph.data_names if not latents.intersection(graph.sites[n].parents))


def response_names(graph: ModelGraph) -> tuple[str, ...]:
    """Data sites that depend on latents: the ones a likelihood scores."""
    covariates = set(covariate_names(graph))
    return tuple(n for n in graph.data_names if n not in covariates)
