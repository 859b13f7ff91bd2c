"""Conversion to ArviZ: the one module that knows the InferenceData schema.

Plates become dimensions with the plate's name; a plate nested inside another
is one dimension over all its instances, with a coordinate
``<parent>_of_<plate>`` naming each instance's enclosing instance (the long
format ArviZ users know from radon-style examples). Event dimensions are
named ``<site>_event_<i>``.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from amortize.padded_program import PaddedPosterior, padded_from_prepared
from amortize.prepare import PreparedData
from amortize.errors import DataError
from amortize.graph import ModelGraph
from amortize.prepare import take_instances
from amortize.padded_program import covariate_names, deterministic_draws

__all__ = ["to_datatree", "from_datatree", "padded_from_prepared", "add_groups", "instance_dataset",
           "parent_coordinate", "PaddedPosterior", "instance_dims", "with_deterministics", "parameter_names",
           "scalar_draws"]

#: The groups that hold data sites: responses, then design covariates.
DATA_GROUPS = ("observed_data", "constant_data")


def parent_coordinate(parent: str, plate: str) -> str:
    """Name of the coordinate that maps instances of a nested plate to their parent."""
    return f"{parent}_of_{plate}"


def _dims(name: str, site, n_event: int) -> list[str]:
    return ([site.path[-1]] if site.path else []) + [f"{name}_event_{i}" for i in range(n_event)]


def instance_dims(name: str, graph: ModelGraph) -> list[str]:
    """Dimension names of site ``name`` after ``(chain, draw)``: its innermost plate, then events."""
    site = graph.layout(name)
    return _dims(name, site, len(site.event_shape))


def to_datatree(
    draws: dict[str, np.ndarray],
    prepared: PreparedData,
    graph: ModelGraph,
    *,
    num_chains: int,
    attrs: dict | None = None,
    groups: dict[str, dict[str, np.ndarray]] | None = None,
    class_probabilities: dict[str, dict[str, np.ndarray]] | None = None,
):
    """Posterior draws and observed data → ``xarray.DataTree`` (InferenceData schema).

    Parameters
    ----------
    draws : dict of site → ``(S, [n_instances], *event)``
        Constrained posterior draws, padded instances removed.
    prepared : PreparedData
        The data the draws condition on (observed values, labels).
    num_chains : int
        The ``S`` iid draws are split into this many chains of ``S // num_chains``.
    attrs : dict, optional
        Extra attributes for every group.
    groups : dict of group → {variable: array}, optional
        More draw-indexed groups (``posterior_predictive``, ``log_likelihood``:
        per data site ``(S, n_instances, *event)``; ``sample_stats``: per
        statistic ``(S,)``), split into chains like the posterior.
    class_probabilities : dict of group → {indicator: ``(S, [n_instances], classes)``}, optional
        Per draw, the probability of each class of a discrete latent given
        that draw's continuous latents and the data, with the extra dimension
        ``<site>_class``: group ``indicator_probabilities`` (for a Markov
        chain, the smoothed marginals) and, for Markov chains,
        ``indicator_filtered_probabilities``. Their mean over draws is the
        marginal posterior p(z = k | data).

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (dims ``(chain, draw, <plate>, ...)``),
        ``observed_data`` (the data sites that depend on latents),
        ``constant_data`` (design covariates: data sites that depend on no
        latent, such as eight schools' standard errors; ArviZ's convention for
        inputs with no predictive counterpart) and any of ``groups``.
    """
    posterior, dims = {}, {}
    for name, value in draws.items():
        site = graph.layout(name)
        posterior[name] = _in_chains(value, num_chains)
        dims[name] = _dims(name, site, len(site.event_shape))
    observed, constant = {}, {}
    covariates = set(covariate_names(graph))
    for name in graph.data_names:
        site = graph.sites[name]
        # ArviZ's convention: inputs without a predictive counterpart (design covariates) are constant_data.
        target = constant if name in covariates else observed
        target[name] = prepared.values[name] if site.path else prepared.values[name][0]
        dims[name] = _dims(name, site, len(site.event_shape))
    contents = {"posterior": posterior, "observed_data": observed}
    if constant:
        contents["constant_data"] = constant
    for group, variables in (groups or {}).items():
        contents[group] = {}
        for name, value in variables.items():
            contents[group][name] = _in_chains(value, num_chains)
    coords = {plate: prepared.labels[plate] for plate in graph.plates}
    tree = az.from_dict(
        contents,
        dims=dims,
        coords=coords,
        attrs={group: {"inference_library": "amortize", **(attrs or {})} for group in contents},
    )
    for group, values in (class_probabilities or {}).items():
        if values:
            tree[group] = _class_probability_group(values, graph, prepared, num_chains, attrs)
            contents[group] = values
    for plate, p in graph.plates.items():
        if p.parent is None:
            continue
        coordinate = parent_coordinate(p.parent, plate)
        for group in contents:
            if plate in tree[group].dims:
                tree[group] = tree[group].to_dataset().assign_coords(
                    {coordinate: (plate, prepared.parent_labels[plate])})
    return tree


def _in_chains(value, num_chains: int) -> np.ndarray:
    """``(S, ...)`` iid draws → ``(num_chains, S // num_chains, ...)``."""
    value = np.asarray(value)
    return value.reshape((num_chains, value.shape[0] // num_chains) + value.shape[1:])


def _class_probability_group(probabilities: dict, graph: ModelGraph, prepared: PreparedData,
                             num_chains: int, attrs: dict | None) -> xr.DataTree:
    variables, coords = {}, {}
    for name, value in probabilities.items():
        site = graph.sites[name]
        dims = ["chain", "draw"] + _dims(name, site, 0) + [f"{name}_class"]
        variables[name] = (dims, _in_chains(value, num_chains))
        coords[f"{name}_class"] = np.arange(np.shape(value)[-1])
        if site.path:
            coords[site.path[-1]] = prepared.labels[site.path[-1]]
    dataset = xr.Dataset(variables, coords=coords,
                         attrs={"inference_library": "amortize", **(attrs or {})})
    return xr.DataTree(dataset)


def _plate_labels(tree, graph: ModelGraph) -> dict:
    """Labels of every plate's instances and of each nested instance's parent, from any group."""
    coords = {}
    for group in (*DATA_GROUPS, "posterior"):
        if group in tree.children:
            for name, coordinate in tree[group].coords.items():
                coords.setdefault(name, np.asarray(coordinate.values))
    labels = {}
    for plate in reversed(list(graph.plates)):  # children first: a parent may be known only from them
        if plate in coords:
            labels[plate] = coords[plate]
            continue
        children = [c for c in graph.children(plate) if parent_coordinate(plate, c) in coords]
        if not children:
            raise DataError(
                f"The DataTree has no coordinate for plate `{plate}`; it was not made for this "
                f"program (plates: {', '.join(graph.plates)})."
            )
        parent_of = coords[parent_coordinate(plate, children[0])]
        _, first = np.unique(parent_of, return_index=True)
        labels[plate] = parent_of[np.sort(first)]
    return labels, coords


def _positions(tree, graph: ModelGraph) -> dict[str, np.ndarray]:
    """Padded position of every instance of every plate, read from the coordinates."""
    labels, coords = _plate_labels(tree, graph)
    positions = {}
    for plate, p in graph.plates.items():
        n = len(labels[plate])
        if p.parent is None:
            positions[plate] = np.arange(n)[:, None]
            continue
        coordinate = parent_coordinate(p.parent, plate)
        if coordinate not in coords:
            raise DataError(f"The DataTree lacks the coordinate `{coordinate}` of nested plate `{plate}`.")
        parent_index = {label: i for i, label in enumerate(labels[p.parent].tolist())}
        rank = np.zeros(len(parent_index), int)
        rows = []
        for label in coords[coordinate].tolist():
            i = parent_index[label]
            rows.append(np.append(positions[p.parent][i], rank[i]))
            rank[i] += 1
        positions[plate] = np.asarray(rows, int).reshape(n, p.depth)
    return positions


def _scatter(values: np.ndarray, positions: np.ndarray | None, sizes: tuple, lead: int) -> np.ndarray:
    """``(*lead, n_instances, *event)`` → ``(*lead, *sizes, *event)``, padding with instance 0."""
    if positions is None:
        return values
    event = values.shape[lead + 1:]
    first = np.take(values, [0], axis=lead)
    out = np.broadcast_to(
        first.reshape(values.shape[:lead] + (1,) * len(sizes) + event),
        values.shape[:lead] + tuple(sizes) + event).copy()
    index = (slice(None),) * lead + tuple(positions.T)
    out[index] = values
    return out


def with_deterministics(draws: dict[str, np.ndarray], prepared: PreparedData, graph: ModelGraph) -> dict:
    """``draws`` (site → ``(S, [n_instances], *event)``) plus the program's deterministic sites at them."""
    if not graph.deterministics:
        return draws
    padded = padded_from_prepared(prepared, graph)
    latents = {}
    for name in graph.latent_names:
        site = graph.sites[name]
        where = padded.instances[site.path[-1]] if site.path else None
        latents[name] = _scatter(np.asarray(draws[name]), where, tuple(padded.sizes[q] for q in site.path), 1)
    values = deterministic_draws(graph, PaddedPosterior(padded.sizes, padded.masks, padded.instances,
                                                        padded.data, latents, 1))
    out = dict(draws)
    for name, value in values.items():
        site = graph.deterministics[name]
        out[name] = take_instances(np.asarray(value), padded.instances[site.path[-1]] if site.path else None)
    return out


def from_datatree(tree, graph: ModelGraph) -> PaddedPosterior:
    """Inverse of :func:`to_datatree`: the posterior and data in padded arrays.

    Works for any tree with this module's layout: amortized draws, the NUTS
    reference of :mod:`amortize.reference`, or draws a user converted the same way.

    Raises
    ------
    DataError
        The tree lacks a data site, a plate dimension or a parent coordinate.
    """
    positions = _positions(tree, graph)
    sizes = {}
    for plate, p in graph.plates.items():
        pos = positions[plate]
        sizes[plate] = int(pos[:, -1].max()) + 1 if len(pos) else 1
    masks = {}
    for plate, p in graph.plates.items():
        mask = np.zeros(tuple(sizes[q] for q in p.path), bool)
        mask[tuple(positions[plate].T)] = True
        masks[plate] = mask
    sources = [tree[g] for g in DATA_GROUPS if g in tree.children]
    data = {}
    for name in graph.data_names:
        found = next((source for source in sources if name in source.data_vars), None)
        if found is None:
            raise DataError(f"The DataTree has no data site `{name}` in observed_data or constant_data.")
        site = graph.sites[name]
        where = positions[site.path[-1]] if site.path else None
        data[name] = _scatter(np.asarray(found[name].values), where,
                              tuple(sizes[q] for q in site.path), 0)
    latents, num_chains = {}, 1
    if "posterior" in tree.children:
        posterior = tree["posterior"]
        for name in graph.latent_names:
            if name not in posterior.data_vars:
                raise DataError(f"The DataTree's posterior has no latent site `{name}`.")
            value = np.asarray(posterior[name].values)
            num_chains = value.shape[0]
            value = value.reshape((-1,) + value.shape[2:])
            site = graph.sites[name]
            where = positions[site.path[-1]] if site.path else None
            latents[name] = _scatter(value, where, tuple(sizes[q] for q in site.path), 1)
    return PaddedPosterior(sizes, masks, positions, data, latents, num_chains)


def _plate_coords(tree, dims) -> dict:
    """Coordinates of the plate dims in ``dims`` (labels and parent labels), from the tree."""
    coords = {}
    for group in (*DATA_GROUPS, "posterior"):
        if group not in tree.children:
            continue
        for name, coordinate in tree[group].coords.items():
            if coordinate.dims and set(coordinate.dims) <= set(dims) and name not in ("chain", "draw"):
                coords.setdefault(name, coordinate.variable)
    return coords


def instance_dataset(tree, graph: ModelGraph, variables: dict, *, lead_dims=(), attrs=None) -> xr.Dataset:
    """Per-site arrays ``(*lead, n_instances, ...)`` → Dataset with plate dims and coords.

    Dims after the lead dims are the site's plate and then its event dims, cut
    to the array's rank (a log density has no event dims).
    """
    data_vars, dims_used = {}, set(lead_dims)
    for name, value in variables.items():
        value = np.asarray(value)
        dims = list(lead_dims) + instance_dims(name, graph)
        dims = dims[: value.ndim]
        data_vars[name] = (dims, value)
        dims_used.update(dims)
    dataset = xr.Dataset(data_vars, attrs=attrs or {})
    return dataset.assign_coords(_plate_coords(tree, dims_used))


def add_groups(tree, graph: ModelGraph, groups: dict, attrs: dict | None = None):
    """A copy of ``tree`` with draw-indexed groups added.

    Parameters
    ----------
    groups : dict of group → {site: ``(S, n_instances, ...)``}
        ``S`` draws in the posterior's order (chains stacked), e.g.
        ``posterior_predictive`` or ``log_likelihood``.
    """
    posterior = tree["posterior"]
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    out = tree.copy()
    for group, variables in groups.items():
        shaped = {n: np.asarray(v).reshape((chains, draws) + np.shape(v)[1:]) for n, v in variables.items()}
        dataset = instance_dataset(tree, graph, shaped, lead_dims=("chain", "draw"),
                                   attrs={"inference_library": "amortize", **(attrs or {})})
        out[group] = dataset.assign_coords(chain=posterior["chain"].values, draw=posterior["draw"].values)
    return out


def parameter_names(site: str, event_shape: tuple[int, ...]) -> list[str]:
    """Scalar names of a site's components: ``theta``, ``w[0]``, ``L[1,0]``."""
    if not event_shape:
        return [site]
    return [f"{site}[{','.join(map(str, ix))}]" for ix in np.ndindex(*event_shape)]


def scalar_draws(posterior, name: str, max_draws: int | None, rng) -> list[tuple[str, np.ndarray]]:
    """Site ``name`` of a posterior group → [(scalar label, draws ``(n,)``)], instances in order,
    labelled by their coordinate (``theta[Choate]``, ``L[1,0]``); at most ``max_draws`` draws, a random
    subset drawn with ``rng`` (every draw with ``None``)."""
    value = posterior[name]
    array = np.asarray(value.values)
    array = array.reshape((-1,) + array.shape[2:])
    if max_draws is not None and array.shape[0] > max_draws:
        array = array[rng.choice(array.shape[0], max_draws, replace=False)]
    dims = value.dims[2:]
    plate = dims[0] if dims and not dims[0].startswith(f"{name}_event_") else None
    labels = [str(v) for v in posterior[plate].values] if plate else [None]
    if plate is None:
        array = array[:, None]
    event_shape = array.shape[2:]
    out = []
    for i, label in enumerate(labels):
        flat = array[:, i].reshape(array.shape[0], -1)
        for c, component in enumerate(parameter_names(name, event_shape)):
            key = component if label is None else f"{name}[{label}]{component[len(name):]}"
            out.append((key, flat[:, c]))
    return out
