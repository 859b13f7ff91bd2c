"""The observed design: plate sizes and covariates that training conditions on.

A user with one real data set rarely needs the networks to amortize over
every design. The analysis conditions on the design anyway (how many groups,
how many observations in each, which covariate values), so simulating the
training data sets *on that design* and amortizing over the parameters alone
is exact, not an approximation: the posterior of the parameters given data
on this design is the same function whichever other designs training saw.
The networks then never see padding beyond the data's own largest group, and
the summary networks need not learn how the posterior changes with the
design.

A :class:`Design` holds the masks of the observed instances and the values of
the covariates (data sites that other data sites depend on, such as radon's
``floor``); :func:`amortize.simulate.simulate` draws the parameters and the
responses from the program with the covariates conditioned on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from amortize.prepare import prepare_data
from amortize.errors import AmortizationGapWarning, DataError
from amortize.graph import ModelGraph, covariate_names

__all__ = ["Design", "make_design", "default_covariates"]


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Design:
    """Plate sizes and covariate values of an observed data set, padded.

    Attributes
    ----------
    sizes : dict of plate → int
        The padded size of every plate: the largest number of instances of it
        in one enclosing instance.
    masks : dict of plate → bool array ``(*padded plates down to it)``
        Which instances exist.
    covariates : dict of site → float array ``(*padded plates, *event)``
        Observed values of the data sites training conditions on (canonical
        layout; zero where masked out).
    paths : dict of plate or site → tuple of plates
        The plates along the leading axes of each mask and covariate.
    """

    sizes: dict
    masks: dict
    covariates: dict
    paths: dict

    def describe(self) -> dict:
        """Instances per plate (total and largest) and the covariates, for the training history."""
        plates = {plate: {"instances": int(mask.sum()), "largest": int(self.sizes[plate])}
                  for plate, mask in self.masks.items()}
        return {"plates": plates, "covariates": sorted(self.covariates)}

    def padded_to(self, sizes: Mapping[str, int]) -> "Design":
        """The same design, zero-padded to at least ``sizes`` per plate (to share a batch with range training)."""
        target = {p: max(int(sizes.get(p, n)), n) for p, n in self.sizes.items()}

        def pad(array, plates):
            widths = [(0, target[p] - array.shape[i]) for i, p in enumerate(plates)]
            return np.pad(array, widths + [(0, 0)] * (array.ndim - len(plates)))

        masks = {p: pad(m, self.paths[p]) for p, m in self.masks.items()}
        covariates = {n: pad(v, self.paths[n]) for n, v in self.covariates.items()}
        return Design(target, masks, covariates, self.paths)


def default_covariates(graph: ModelGraph) -> tuple[str, ...]:
    """A design's covariates by default: the data sites another data site depends on (radon's ``floor``)
    and that depend on no latent themselves. An autoregressive response (air traffic's ``y``, whose next
    year depends on this year's) is a response, not a design: conditioning on it would train on the
    observed responses whatever the parameters."""
    used = {p for name in graph.data_names for p in graph.sites[name].parents}
    return tuple(name for name in covariate_names(graph) if name in used)


def make_design(graph: ModelGraph, data: Mapping[str, Any], *, index: Mapping[str, Any] | None = None,
                covariates: Sequence[str] | None = None) -> Design:
    """The design of an observed data set: its plate sizes and its covariates.

    Parameters
    ----------
    graph : ModelGraph
    data : mapping of site → values
        A data set in any form :meth:`amortize.Amortizer.sample` takes. Only
        the sizes and the covariate sites are kept; the responses are not.
    index : mapping of plate → labels, optional
        Long format, as in ``sample``.
    covariates : sequence of str, optional
        Data sites whose observed values training conditions on. Default: the
        data sites another data site depends on (:func:`default_covariates`).
        Pass ``()`` to condition on the sizes alone.

    Raises
    ------
    DataError
        A covariate that is not a data site, or a plate size outside the
        compiled training range (widen ``sizes=`` in ``compile``).
    """
    covariates = default_covariates(graph) if covariates is None else tuple(covariates)
    for name in covariates:
        if name not in graph.data_names:
            raise DataError(f"Design covariate `{name}` is not a data site of the program; "
                            f"its data sites are: {', '.join(graph.data_names)}.")
    with warnings.catch_warnings():  # sizes out of range are an error here, below
        warnings.simplefilter("ignore", AmortizationGapWarning)
        prepared = prepare_data(graph, data, index=index)
    masks = {p: np.asarray(m[0], bool) for p, m in prepared.masks.items()}
    for plate, mask in masks.items():
        low, high = graph.plates[plate].size_range
        counts = mask.sum(-1)
        parent = masks[graph.plates[plate].parent] if graph.plates[plate].parent else np.ones((), bool)
        counts = counts[parent]
        if counts.size and (counts.min() < low or counts.max() > high):
            raise DataError(
                f"The design has {counts.min()} to {counts.max()} instances of plate `{plate}` per "
                f"{'data set' if parent.ndim == 0 else 'enclosing instance'}, outside the compiled range "
                f"[{low}, {high}]; compile with sizes={{'{plate}': ({min(low, counts.min())}, "
                f"{max(high, counts.max())})}} to train on it.")
    sizes = {p: int(m.shape[-1]) for p, m in masks.items()}
    values = {}
    for name in covariates:
        site = graph.sites[name]
        array = np.asarray(prepared.data[name][0])  # (*padded plates, event size)
        values[name] = array.reshape(array.shape[: len(site.path)] + tuple(site.event_shape)).astype(np.float32)
    paths = {p: plate.path for p, plate in graph.plates.items()}
    paths |= {name: graph.sites[name].path for name in covariates}
    return Design(sizes, masks, values, paths)
