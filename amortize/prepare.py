"""Turning a user's data set into padded arrays and masks.

Three input forms are accepted for a data site whose plates are
``(p_1, ..., p_k)`` (outermost first) and event shape ``E``:

* **rectangular**: an array of shape ``(n_1, ..., n_k, *E)``;
* **ragged**: nested lists, ``k - 1`` deep, whose leaves are arrays
  ``(n_k, *E)`` (e.g. one array of observations per group);
* **long format**: an array of rows ``(N, *E)`` together with
  ``index={p_1: labels, ..., p_{k-1}: labels}``, one label per row for every
  enclosing plate (what NumPyro users usually write, e.g. ``county_idx``).
  Rows with the same labels form one instance; labels become coordinates.

Whatever the form, the result is a :class:`PreparedData`: arrays padded to a
common shape, a boolean mask per plate, and the labels of every instance.
Every check of user data happens here, once (deeper code assumes it passed);
the program run at that padded layout is :mod:`amortize.padded_program`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from amortize.errors import AmortizationGapWarning, DataError
from amortize.graph import ModelGraph

__all__ = ["PreparedData", "padded_bucket", "prepare_data", "select_instance", "take_instances"]


@dataclass(frozen=True)
class PreparedData:
    """One data set, padded.

    Attributes
    ----------
    data : dict of site → ``(1, *padded plates, features)`` float32 array
    masks : dict of plate → ``(1, *padded plates)`` bool array
    instances : dict of plate → int array ``(n_instances, depth)``
        Padded-array index of every real instance, in order.
    labels : dict of plate → array ``(n_instances,)``
        Coordinate label of every real instance.
    parent_labels : dict of plate → array ``(n_instances,)`` or None
        Label of each instance's enclosing instance (None for top-level plates).
    values : dict of site → array
        The observed values of the real instances, in instance order:
        ``(n_instances, *event)``, or ``(1, *event)`` for a global site.
    """

    data: dict
    masks: dict
    instances: dict
    labels: dict
    parent_labels: dict
    values: dict


def _as_array(name, value) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"Data for site `{name}` could not be read as numbers: {error}.") from None
    return array


def _nested_from_rectangular(array: np.ndarray, depth: int):
    if depth <= 1:
        return array
    return [_nested_from_rectangular(a, depth - 1) for a in array]


def _nested_from_long(name, rows: np.ndarray, path, index, labels_out):
    """Group rows by the index labels of the enclosing plates → nested lists."""
    enclosing = path[:-1]
    keys = []
    for plate in enclosing:
        if plate not in index:
            raise DataError(
                f"Data for site `{name}` is in long format but `index` has no labels for "
                f"plate `{plate}`; pass index={{'{plate}': labels, ...}} with one label per row."
            )
        labels = np.asarray(index[plate])
        if labels.shape != (rows.shape[0],):
            raise DataError(
                f"index['{plate}'] has shape {labels.shape}, but site `{name}` has "
                f"{rows.shape[0]} rows; give one label per row."
            )
        keys.append(labels)

    def build(level, selection, prefix):
        if level == len(enclosing):
            return rows[selection]
        column = keys[level][selection]
        _, first = np.unique(column, return_index=True)
        ordered = column[np.sort(first)]  # order of first appearance
        plate = enclosing[level]
        children = []
        for label in ordered:
            labels_out.setdefault(plate, {})[prefix + (label,)] = label
            children.append(build(level + 1, selection[column == label], prefix + (label,)))
        return children

    return build(0, np.arange(rows.shape[0]), ())


def _counts(nested, depth: int, name: str, event_shape) -> list:
    """Instance counts per plate: a list (one entry per plate) of nested count lists."""
    if depth == 1:
        array = np.asarray(nested, dtype=np.float64) if not isinstance(nested, np.ndarray) else nested
        if array.ndim == 0 or tuple(array.shape[1:]) != tuple(event_shape):
            raise DataError(
                f"Data for site `{name}` has an innermost block of shape {array.shape}; expected "
                f"(n, {', '.join(map(str, event_shape))}{',' if len(event_shape) == 1 else ''}) "
                f"with event shape {tuple(event_shape)}."
            )
        return [array.shape[0]]
    if isinstance(nested, np.ndarray) and nested.ndim == 0 or not hasattr(nested, "__len__"):
        raise DataError(f"Data for site `{name}` is not nested {depth} deep as its plates require.")
    inner = [_counts(child, depth - 1, name, event_shape) for child in nested]
    return [len(nested)] + [[c[i] for c in inner] for i in range(depth - 1)]


def _max_count(counts) -> int:
    if isinstance(counts, list):
        return max((_max_count(c) for c in counts), default=0)
    return int(counts)


def prepare_data(
    graph: ModelGraph,
    data: Mapping[str, Any],
    *,
    index: Mapping[str, Any] | None = None,
    coords: Mapping[str, Any] | None = None,
    pad_to: Mapping[str, int] | None = None,
) -> PreparedData:
    """Check ``data`` against the program and pad it.

    Parameters
    ----------
    graph : ModelGraph
    data : mapping of site → array, nested lists, or long-format rows
    index : mapping of plate → labels, optional
        Long format: one label per row for each enclosing plate.
    coords : mapping of plate → labels, optional
        Labels for the instances of a plate (rectangular or ragged input).
    pad_to : mapping of plate → int, optional
        Pad each plate to at least this size (the trained maximum, so that
        one compiled sampler serves every data set in range); larger data are
        padded to the next power of two. Plates not named are padded to the
        largest instance count in the data.

    Raises
    ------
    DataError
        Unknown or missing site, shapes that do not fit the plates, sites that
        disagree on a plate's size, NaN or inf values, values outside the
        support of the site's distribution (when it does not depend on latents).

    Warns
    -----
    AmortizationGapWarning
        When a plate's size is outside its trained range (graphs with
        training ranges only).
    """
    if not isinstance(data, Mapping):
        raise DataError(f"Data must be a mapping of site name to values; got {type(data).__name__}.")
    for name in data:
        if name not in graph.sites or graph.sites[name].role != "data":
            known = ", ".join(graph.data_names)
            hint = " (it is a latent site)" if name in graph.sites else ""
            raise DataError(f"Unknown data site `{name}`{hint}; the compiled data sites are: {known}.")
    for name in graph.data_names:
        if name not in data:
            site = graph.sites[name]
            raise DataError(
                f"Data site `{name}` ({site.describe_level()}) is missing; pass it as "
                f"data={{'{name}': ...}}."
            )
    index = dict(index or {})
    for plate in index:
        if plate not in graph.plates:
            raise DataError(f"index names plate `{plate}`, which the program does not have.")

    label_map: dict[str, dict] = {}
    counts_by_plate: dict[str, tuple] = {}
    nested_by_site = {}
    for name in graph.data_names:
        site = graph.sites[name]
        depth = len(site.path)
        event_ndim = len(site.event_shape)
        value = data[name]
        if depth == 0:
            array = _as_array(name, value)
            if array.shape != tuple(site.event_shape):
                raise DataError(
                    f"Data site `{name}` is global with event shape {site.event_shape}, "
                    f"but the data has shape {array.shape}."
                )
            nested_by_site[name] = array
            continue
        uses_long = depth > 1 and any(p in index for p in site.path[:-1])
        if uses_long:
            nested = _nested_from_long(name, _as_array(name, value), site.path, index, label_map)
        elif isinstance(value, (list, tuple)) and depth > 1:
            nested = [np.asarray(v, dtype=np.float64) if depth == 2 else v for v in value]
        else:
            array = _as_array(name, value)
            if array.ndim != depth + event_ndim or tuple(array.shape[depth:]) != tuple(site.event_shape):
                plates = ", ".join(site.path)
                raise DataError(
                    f"Data for site `{name}` has shape {array.shape}, but its plates ({plates}) "
                    f"and event shape {site.event_shape} need {depth + event_ndim} dims "
                    f"({plates}{', ' if event_ndim else ''}{', '.join(map(str, site.event_shape))}). "
                    f"For ragged groups pass a list of arrays, or long format with index=."
                )
            nested = _nested_from_rectangular(array, depth)
        counts = _counts(nested, depth, name, site.event_shape)
        for plate, plate_counts in zip(site.path, counts):
            if plate in counts_by_plate and counts_by_plate[plate][1] != plate_counts:
                other = counts_by_plate[plate][0]
                raise DataError(
                    f"Data sites `{other}` and `{name}` disagree on the instances of plate "
                    f"`{plate}`; every site inside `{plate}` must have the same number of "
                    f"instances in the same order."
                )
            counts_by_plate.setdefault(plate, (name, plate_counts))
        nested_by_site[name] = nested

    for plate in graph.plates:
        if plate not in counts_by_plate:
            raise DataError(
                f"No data site lies inside plate `{plate}`, so its size cannot be read from "
                f"the data; amortize needs at least one data site in every plate."
            )
    pad_to = dict(pad_to or {})
    padded_sizes = {}
    for plate, (_, counts) in counts_by_plate.items():
        actual = _max_count(counts)
        low, high = graph.plates[plate].size_range
        smallest = min(_all_counts(counts))
        if graph.has_training_ranges and (actual > high or smallest < low):
            warnings.warn(
                f"Plate `{plate}` has {smallest} to {actual} instances per data set or group here, "
                f"outside the trained range [{low}, {high}]; the posterior is extrapolated "
                f"(amortization gap). Retrain with a wider sizes={{'{plate}': ...}} to rely on it.",
                AmortizationGapWarning, stacklevel=3)
        if plate in pad_to:
            trained = pad_to[plate]
            padded_sizes[plate] = max(trained, padded_bucket(actual) if actual > trained else actual, 1)
        else:
            padded_sizes[plate] = max(actual, 1)

    masks = {}
    instances = {}
    for plate, p in graph.plates.items():
        shape = tuple(padded_sizes[q] for q in p.path)
        mask = np.zeros(shape, bool)
        counts = counts_by_plate[plate][1]
        _fill_mask(mask, counts, ())
        masks[plate] = mask[None]
        instances[plate] = np.argwhere(mask)

    out_data, values = {}, {}
    for name in graph.data_names:
        site = graph.sites[name]
        shape = tuple(padded_sizes[p] for p in site.path)
        array = np.zeros(shape + (site.event_size,), np.float64)
        if site.path:
            _fill_values(array, nested_by_site[name], len(site.path), ())
            rows = array[masks[site.path[-1]][0]]  # real instances, in instance order
        else:
            array[...] = nested_by_site[name].reshape(site.event_size)
            rows = array[None]
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            bad = int(np.argmin(finite))
            where = ""
            if site.path:
                position = tuple(int(i) for i in instances[site.path[-1]][bad])
                where = f" (instance {position} of {', '.join(site.path)})"
            raise DataError(
                f"Data for site `{name}` contains NaN or inf{where}. Remove or impute those "
                f"values; missing observations can be left out of a ragged group instead."
            )
        values[name] = rows.reshape((rows.shape[0],) + tuple(site.event_shape))
        _check_support(site, values[name], instances[site.path[-1]] if site.path else None)
        out_data[name] = array.astype(np.float32)[None]

    labels, parent_labels = {}, {}
    coords = dict(coords or {})
    for plate, p in graph.plates.items():
        n = len(instances[plate])
        if plate in coords:
            given = np.asarray(coords[plate])
            if given.shape != (n,):
                raise DataError(f"coords['{plate}'] has {given.size} labels; the data has {n} instances of `{plate}`.")
            labels[plate] = given
        elif plate in label_map:
            labels[plate] = np.asarray(list(label_map[plate].values()))
            if len(np.unique(labels[plate])) != n:
                labels[plate] = np.arange(n)
        else:
            labels[plate] = np.arange(n)
        if p.parent:
            # Instance number of every padded parent position, then one lookup per child.
            number = np.full(masks[p.parent].shape[1:], -1)
            number[tuple(instances[p.parent].T)] = np.arange(len(instances[p.parent]))
            parent_labels[plate] = labels[p.parent][number[tuple(instances[plate][:, :-1].T)]]
        else:
            parent_labels[plate] = None
    return PreparedData(out_data, masks, instances, labels, parent_labels, values)


def _check_support(site, values: np.ndarray, positions) -> None:
    """DataError when observed ``values (instances, *event_shape)`` lie outside the site's support."""
    if site.support is None:  # the support depends on latent values; the program's density decides
        return
    try:
        inside = np.asarray(site.support(values.astype(np.float32)), bool)
    except Exception:  # a constraint that cannot be evaluated outside a model: nothing to check
        return
    if inside.all():
        return
    inside = np.broadcast_to(inside, values.shape[:1])
    bad = int(np.argmin(inside))
    where = ""
    if positions is not None:
        where = f" (e.g. instance {tuple(int(i) for i in positions[bad])} of {', '.join(site.path)})"
    raise DataError(
        f"Data for site `{site.name}` has {int((~inside).sum())} value(s) outside the support of its "
        f"distribution, {site.support!r}{where}: e.g. {np.round(values[bad], 6).tolist()}. Such data have zero density "
        f"under the program; fix or remove them.")


def _all_counts(counts):
    if isinstance(counts, list):
        return [c for child in counts for c in _all_counts(child)]
    return [int(counts)]


def _fill_mask(mask, counts, prefix):
    if isinstance(counts, list):
        for i, c in enumerate(counts):
            _fill_mask(mask, c, prefix + (i,))
    else:
        mask[prefix + (slice(0, int(counts)),)] = True


def _fill_values(array, nested, depth, prefix):
    if depth == 1:
        block = np.asarray(nested, np.float64).reshape(len(nested), array.shape[-1])
        array[prefix + (slice(0, block.shape[0]),)] = block
        return
    for i, child in enumerate(nested):
        _fill_values(array, child, depth - 1, prefix + (i,))


def select_instance(prepared: PreparedData, graph: ModelGraph, plate: str, position: int) -> PreparedData:
    """The data set reduced to one instance of top-level ``plate`` (at padded ``position``).

    Everything inside that plate keeps only that instance (and its nested
    instances, at their padded sizes); sites and plates outside it are kept
    whole. Leave-one-group-out CV scores a left-out group on this.
    """
    inside = {q for q, p in graph.plates.items() if p.path[0] == plate}
    data = {n: (v[:, position:position + 1] if graph.sites[n].path[:1] == (plate,) else v)
            for n, v in prepared.data.items()}
    masks = {q: (m[:, position:position + 1] if q in inside else m) for q, m in prepared.masks.items()}
    instances, labels, parents, rows_of = {}, {}, {}, {}
    for q in graph.plates:
        if q not in inside:
            instances[q], labels[q], parents[q] = prepared.instances[q], prepared.labels[q], prepared.parent_labels[q]
            continue
        rows = np.flatnonzero(prepared.instances[q][:, 0] == position)
        rows_of[q] = rows
        moved = prepared.instances[q][rows].copy()
        moved[:, 0] = 0
        instances[q], labels[q] = moved, prepared.labels[q][rows]
        parents[q] = None if prepared.parent_labels[q] is None else prepared.parent_labels[q][rows]
    values = {}
    for n, v in prepared.values.items():
        path = graph.sites[n].path
        values[n] = v[rows_of[path[-1]]] if path and path[0] == plate else v
    return PreparedData(data, masks, instances, labels, parents, values)


def take_instances(value, positions: np.ndarray | None, lead: int = 1) -> np.ndarray:
    """``(*lead, *padded plates, *event)`` → ``(*lead, n_instances, *event)``: the real instances.

    ``positions`` is a plate's ``(n_instances, depth)`` padded index
    (:attr:`PreparedData.instances`); ``None`` (a global site) returns ``value``.
    """
    value = np.asarray(value)
    if positions is None:
        return value
    return value[(slice(None),) * lead + tuple(positions.T)]


def padded_bucket(size: int) -> int:
    """Round a size beyond the trained range up to a power of two (fewer recompilations)."""
    return 1 << math.ceil(math.log2(max(size, 1)))
