"""``ModelGraph``: the sites, levels, parents and supports of a program.

Levels are plates. They must nest as a tree (each plate inside at most one
other); a site lives at the level of its innermost plate, or at the root (the
global level) when it is in no plate.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import jax.numpy as jnp
from numpyro import handlers

from amortize.errors import ModelError, ModelWarning
from amortize.graph.dependence import output_dependencies
from amortize.program.trace import (
    ProgramTrace,
    SiteTrace,
    model_size_arguments,
    size_argument,
    trace_program,
    unconstrained_event_shape,
)

__all__ = ["Plate", "Site", "ModelGraph", "build_graph", "graph_for", "resolve_graph"]


@dataclass(frozen=True)
class Plate:
    """One level of the model.

    Attributes
    ----------
    name : str
        Plate name; also the ArviZ dimension name.
    parent : str or None
        Enclosing plate (None for a top-level plate).
    path : tuple of str
        Plates from the outermost down to this one (inclusive).
    size_range : (int, int)
        Training range ``(min, max)`` of the number of instances per parent instance.
    ordered : bool
        True for an ordered (time) level: the steps of a
        ``numpyro.contrib.control_flow.scan`` whose length is the model
        argument ``n_<name>``. Its instances are steps, not exchangeable
        members of a set, and a shorter series is the start of a longer one.
    """

    name: str
    parent: str | None
    path: tuple[str, ...]
    size_range: tuple[int, int]
    ordered: bool = False

    @property
    def depth(self) -> int:
        return len(self.path)


@dataclass(frozen=True)
class Site:
    """A latent or data site with everything needed to pack and unpack it.

    Attributes
    ----------
    name : str
    role : {"latent", "data"}
    path : tuple of str
        Enclosing plates, outermost first (the site's level is ``path[-1]``).
    plate_axes : tuple of int
        For each plate of ``path``, the axis of the program's value that holds it.
    batch_ndim : int
        Number of batch dims of the program's value.
    event_shape : tuple of int
    unconstrained_shape : tuple of int
        Event shape after ``biject_to(support).inv`` (latents only).
    support : Constraint
    distribution : str
    parents : tuple of str
    num_classes : int or None
        For a finite discrete latent (a mixture indicator): its values are the
        class indices ``0 .. num_classes - 1``. None for continuous sites and data.
    folded_axes : tuple of int
        Batch axes of the program's value outside every plate, of fixed size
        (``HalfNormal(jnp.ones(2))`` without ``to_event``): treated as event
        axes, placed in front of the distribution's own event dims in
        ``event_shape``; their log densities are summed, as NUTS does.
    """

    name: str
    role: str
    path: tuple[str, ...]
    plate_axes: tuple[int, ...]
    batch_ndim: int
    event_shape: tuple[int, ...]
    unconstrained_shape: tuple[int, ...]
    support: object
    distribution: str
    dtype: object
    parents: tuple[str, ...]
    num_classes: int | None = None
    folded_axes: tuple[int, ...] = ()

    @property
    def is_discrete(self) -> bool:
        return self.num_classes is not None

    @property
    def level(self) -> str | None:
        return self.path[-1] if self.path else None

    @property
    def event_size(self) -> int:
        return math.prod(self.event_shape)

    @property
    def unconstrained_size(self) -> int:
        return math.prod(self.unconstrained_shape)

    def describe_level(self) -> str:
        return f"plate `{self.level}`" if self.path else "the global level"


@dataclass(frozen=True)
class ModelGraph:
    """The program as amortize sees it.

    Attributes
    ----------
    model : callable
        The NumPyro program.
    sites : dict of str to Site
        Latent and data sites, in program order.
    plates : dict of str to Plate
        Plates, parents before children.
    data_names : tuple of str
        Data sites, in the order the user gave them.
    has_training_ranges : bool
        False for a graph built only to run the program on data (NUTS,
        diagnostics; :func:`graph_for`): its plate ranges are placeholders, so
        data are not checked against them.
    deterministics : dict of str to Site
        ``numpyro.deterministic`` sites (also those a ``reparam`` handler
        creates) whose values lie in the plates' layout: computed from every
        posterior draw and returned with the posterior, as NumPyro's
        ``MCMC.get_samples`` does. Role ``"deterministic"``; not in ``sites``.
    """

    model: Callable
    sites: dict[str, Site]
    plates: dict[str, Plate]
    data_names: tuple[str, ...]
    has_training_ranges: bool = True
    deterministics: dict = dataclasses.field(default_factory=dict)

    def layout(self, name: str) -> Site:
        """The :class:`Site` of a sample or deterministic site (plates, axes, event shape)."""
        return self.sites[name] if name in self.sites else self.deterministics[name]

    @property
    def latent_names(self) -> tuple[str, ...]:
        return tuple(n for n, s in self.sites.items() if s.role == "latent")

    def children(self, plate: str | None) -> tuple[str, ...]:
        """Plates directly inside ``plate`` (``None``: the top-level plates)."""
        return tuple(p.name for p in self.plates.values() if p.parent == plate)

    def sites_at(self, plate: str | None, role: str) -> tuple[str, ...]:
        """Sites of ``role`` whose innermost plate is ``plate`` (``None``: global)."""
        return tuple(
            n for n, s in self.sites.items() if s.role == role and s.level == plate
        )

    @property
    def local_continuous_latents(self) -> tuple[str, ...]:
        """Continuous latent sites inside a plate: those with pooling factors (indicators have none)."""
        return tuple(n for n, s in self.sites.items() if s.role == "latent" and s.path and not s.is_discrete)

    @property
    def size_ranges(self) -> dict[str, tuple[int, int]]:
        """Training range ``(min, max)`` of every plate's size."""
        return {name: p.size_range for name, p in self.plates.items()}

    @property
    def ordered_level(self) -> Plate | None:
        """The ordered (time) level a ``scan`` forms, or None (at most one per program)."""
        return next((p for p in self.plates.values() if p.ordered), None)

    def max_sizes(self) -> dict[str, int]:
        return {name: p.size_range[1] for name, p in self.plates.items()}

    def program_kwargs(self, sizes: Mapping[str, int]) -> dict[str, int]:
        """Keyword arguments that run the program with the given plate sizes."""
        return {size_argument(p): int(n) for p, n in sizes.items()}

    def fingerprint(self) -> dict:
        """A JSON-able summary used to check a saved amortizer matches its program."""
        return {
            "sites": {
                n: {
                    "role": s.role,
                    "path": list(s.path),
                    "event_shape": list(s.event_shape),
                    "distribution": s.distribution,
                    "support": str(s.support),
                }
                for n, s in self.sites.items()
            },
            "plates": {n: [p.parent, list(p.size_range)] + (["ordered"] if p.ordered else [])
                       for n, p in self.plates.items()},
            "data": list(self.data_names),
        }


def _check_sizes(sizes: Mapping[str, object]) -> dict[str, tuple[int, int]]:
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


def _refuse_unamortizable(trace: ProgramTrace, data: tuple[str, ...]) -> None:
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


def _warn_unpassed_arguments(model, data: tuple[str, ...]) -> None:
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


def _scan_level(first: ProgramTrace, second: ProgramTrace, ranges: Mapping[str, tuple[int, int]]):
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


def _scan_parents(model, ranges, sites: dict, scanned) -> dict:
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
    ranges = _check_sizes(sizes)
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
        _refuse_unamortizable(first, data)
        _warn_unpassed_arguments(model, data)
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
    scan = _scan_level(first, second, ranges)
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
        sites = _scan_parents(model, ranges, sites, scan[2])
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
                    f"through an index, `{parent}[idx]`, are not read as groups yet: write plate "
                    f"`{extra[0]}` around a plate of its rows and pass long-format data with "
                    f"index=, see docs/from_mcmc.md.)"
                )
    if not any(s.role == "latent" for s in sites.values()):
        raise ModelError("The program has no latent sites: there is nothing to infer.")
    _check_indicators(sites)
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


def _check_indicators(sites: Mapping[str, Site]) -> None:
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
