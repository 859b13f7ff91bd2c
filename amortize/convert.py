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

from amortize.data import PreparedData
from amortize.graph import ModelGraph

__all__ = ["to_datatree", "parent_coordinate"]


def parent_coordinate(parent: str, plate: str) -> str:
    """Name of the coordinate that maps instances of a nested plate to their parent."""
    return f"{parent}_of_{plate}"


def _dims(name: str, site, n_event: int) -> list[str]:
    return ([site.path[-1]] if site.path else []) + [f"{name}_event_{i}" for i in range(n_event)]


def to_datatree(
    draws: dict[str, np.ndarray],
    prepared: PreparedData,
    graph: ModelGraph,
    *,
    num_chains: int,
    attrs: dict | None = None,
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

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (dims ``(chain, draw, <plate>, ...)``) and
        ``observed_data``.
    """
    posterior, dims = {}, {}
    for name, value in draws.items():
        site = graph.sites[name]
        shaped = value.reshape((num_chains, value.shape[0] // num_chains) + value.shape[1:])
        posterior[name] = shaped
        dims[name] = _dims(name, site, len(site.event_shape))
    observed = {}
    for name in graph.data_names:
        site = graph.sites[name]
        observed[name] = prepared.values[name] if site.path else prepared.values[name][0]
        dims[name] = _dims(name, site, len(site.event_shape))
    coords = {plate: prepared.labels[plate] for plate in graph.plates}
    tree = az.from_dict(
        {"posterior": posterior, "observed_data": observed},
        dims=dims,
        coords=coords,
        attrs={group: {"inference_library": "amortize", **(attrs or {})}
               for group in ("posterior", "observed_data")},
    )
    for plate, p in graph.plates.items():
        if p.parent is None:
            continue
        coordinate = parent_coordinate(p.parent, plate)
        for group in ("posterior", "observed_data"):
            if plate in tree[group].dims:
                tree[group] = tree[group].to_dataset().assign_coords(
                    {coordinate: (plate, prepared.parent_labels[plate])})
    return tree
