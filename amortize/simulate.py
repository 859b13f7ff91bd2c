"""Prior-predictive simulation from the program, and packing sites to vectors.

The user's program is the simulator: it runs under ``seed`` and ``trace``
handlers at the largest trained sizes, and ragged sizes are drawn as masks
(one compiled function for every size). Because the instances of a plate are
conditionally independent given the enclosing latents, dropping instances by
mask is the same as simulating fewer of them.

Shapes use these names: ``B`` data sets, then the plate sizes of a level in
nesting order (outermost first), then features. Every site is moved to this
*canonical layout* ``(*plates, *event)``, whatever plate dims the program used.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from amortize.design import Design
from amortize.factors import kind_of
from amortize.graph import Factor, Factorization, ModelGraph, Site

__all__ = [
    "Simulation",
    "to_canonical",
    "from_canonical",
    "instance_log_prob",
    "draw_masks",
    "simulate",
    "pack_factor",
    "unpack_factor",
    "level_shape",
    "simulate_data_set",
    "in_chunks",
    "chunked_simulator",
    "simulate_in_chunks",
]


class Simulation(NamedTuple):
    """A batch of simulated data sets at the largest trained sizes.

    Attributes
    ----------
    latents : dict of str to Array
        Per factor, unconstrained packed latents ``(B, *level_shape, dim)``.
    data : dict of str to Array
        Per data site, ``(B, *plates, features)``; zero where masked out.
    masks : dict of str to Array
        Per plate, boolean ``(B, *plates_down_to_it)``: which instances exist.
    valid : Array
        ``(B,)`` boolean: False for a simulation with a non-finite value (left
        out of the loss and counted in the training history).
    """

    latents: dict
    data: dict
    masks: dict
    valid: jax.Array


def level_shape(graph: ModelGraph, path: tuple[str, ...], sizes=None) -> tuple[int, ...]:
    """Plate sizes along ``path`` (default: the largest trained sizes)."""
    sizes = sizes or graph.max_sizes()
    return tuple(sizes[p] for p in path)


def _canonical_order(value: jax.Array, plate_axes, folded_axes, batch_ndim: int) -> jax.Array:
    kept = list(plate_axes) + list(folded_axes)
    other = [a for a in range(batch_ndim) if a not in kept]
    moved = jnp.transpose(value, kept + other + list(range(batch_ndim, value.ndim)))
    return moved.reshape(moved.shape[: len(kept)] + moved.shape[batch_ndim:])


def to_canonical(value: jax.Array, site: Site) -> jax.Array:
    """Program layout ``(*batch, *event)`` → canonical ``(*plates, *event)``.

    Batch axes outside every plate (the site's ``folded_axes``) join the
    event, in front of the distribution's own event dims.
    """
    return _canonical_order(value, site.plate_axes, site.folded_axes, site.batch_ndim)


def instance_log_prob(log_prob: jax.Array, value: jax.Array, site: Site) -> jax.Array:
    """A traced site's log density → one term per instance, canonical ``(*lead, *plates)``.

    ``value`` is the site's value as traced (leading draw axes allowed in
    front); the density is broadcast to its batch shape and summed over the
    folded axes (batch axes outside every plate, which are part of the event).
    """
    n_event = len(site.event_shape) - len(site.folded_axes)
    log_prob = jnp.broadcast_to(log_prob, jnp.shape(value)[: jnp.ndim(value) - n_event])
    if not site.folded_axes:
        return to_canonical(log_prob, site)
    lead = log_prob.ndim - site.batch_ndim
    log_prob = log_prob.sum(axis=tuple(lead + a for a in site.folded_axes))
    plate_axes = [a - sum(f < a for f in site.folded_axes) for a in site.plate_axes]
    return _canonical_order(log_prob, plate_axes, (), site.batch_ndim - len(site.folded_axes))


def from_canonical(value: jax.Array, site: Site, event_shape: tuple[int, ...] | None = None) -> jax.Array:
    """Canonical ``(*lead, *plates, *event)`` → program layout ``(*lead, *batch, *event)``.

    Leading axes (draws, chains) are kept in front, as NumPyro expects of
    batched substitutions. ``event_shape`` defaults to the site's; pass ``()``
    to move a per-instance array (a mask) into the site's batch layout.
    """
    full = event_shape is None
    event_shape = tuple(site.event_shape if full else event_shape)
    folded = site.folded_axes if full else ()
    placed = list(site.plate_axes) + list(folded)  # canonical axes after the lead, in this order
    n_event = len(event_shape) - len(folded)
    n_lead = value.ndim - len(placed) - n_event
    lead = value.shape[:n_lead]
    extents = value.shape[n_lead : n_lead + len(placed)]
    batch = [1] * site.batch_ndim
    for axis, size in zip(placed, extents):
        batch[axis] = size
    # Put plates and folded axes in the program's axis order, then insert the singleton axes.
    order = sorted(range(len(placed)), key=lambda i: placed[i])
    perm = list(range(n_lead)) + [n_lead + i for i in order] + list(
        range(n_lead + len(placed), value.ndim)
    )
    return jnp.transpose(value, perm).reshape(lead + tuple(batch) + event_shape[len(folded):])


def draw_masks(key: jax.Array, graph: ModelGraph, batch_size: int, stratified: bool = False) -> dict[str, jax.Array]:
    """Draw ragged plate sizes as masks.

    A top-level plate draws one size per data set, uniformly in its training
    range. For a nested plate, each data set follows one of three designs,
    with equal probability:

    * every enclosing instance draws its size uniformly over the whole range
      (strongly unbalanced designs);
    * the data set first draws a sub-range ``[lo, hi]`` (two uniform draws,
      sorted) and every instance draws its size in it, so balanced designs
      (``lo == hi``, e.g. ten groups of one observation) are common, as they
      are in data; independent sizes alone would almost never produce one;
    * every instance draws its size log-uniformly over the whole range: many
      small groups next to a few large ones, the shape of observational data
      (radon: most counties have a handful of houses, two have over 100),
      which the uniform designs almost never produce.

    With ``stratified``, every data set's sizes follow the same distribution,
    but the batch covers it evenly: the top-level sizes are stratified (data
    set ``b`` draws its size in a random one of ``batch_size`` equal slices of
    the range, each slice used once) and the three designs take turns. The
    batch's total number of instances then varies little from batch to batch
    (what a packed layout, :mod:`amortize.networks.packing`, pads to); the
    expected loss is unchanged, as each data set's distribution is.

    Returns
    -------
    dict of str to Array
        Per plate, boolean ``(batch_size, *plates_down_to_it)``.
    """
    masks: dict[str, jax.Array] = {}
    keys = jax.random.split(key, max(len(graph.plates), 1))
    for k, (name, plate) in zip(keys, graph.plates.items()):
        low, high = plate.size_range
        parent = masks[plate.parent] if plate.parent else jnp.ones((batch_size,), bool)
        range_key, count_key = jax.random.split(k)
        shape = parent.shape
        lead = (batch_size,) + (1,) * (len(shape) - 1)
        if plate.parent is None and stratified:  # slice b of the range for data set perm(b), uniform within
            slice_key, within_key = jax.random.split(jax.random.fold_in(count_key, 1))
            share = (jax.random.permutation(slice_key, batch_size)
                     + jax.random.uniform(within_key, (batch_size,))) / batch_size
            counts = jnp.minimum(low + jnp.floor(share * (high - low + 1)).astype(jnp.int32), high)
        elif plate.parent is None:  # a top-level plate: one size per data set over the whole range
            counts = jax.random.randint(count_key, shape, low, high + 1)
        if plate.parent is not None:
            bound_key, scheme_key = jax.random.split(range_key)
            uniform_key, log_key = jax.random.split(count_key)
            sub = jnp.sort(jax.random.randint(bound_key, (batch_size, 2), low, high + 1), axis=1)
            if stratified:  # the designs take turns from a random start, in a random order
                offset_key, order_key = jax.random.split(jax.random.fold_in(scheme_key, 1))
                turns = (jnp.arange(batch_size) + jax.random.randint(offset_key, (), 0, 3)) % 3
                scheme = jax.random.permutation(order_key, turns)
            else:
                scheme = jax.random.randint(scheme_key, (batch_size,), 0, 3)
            bounds = jnp.where((scheme == 1)[:, None], sub, jnp.array([low, high]))
            uniform = jax.random.randint(uniform_key, shape, bounds[:, 0].reshape(lead),
                                         bounds[:, 1].reshape(lead) + 1)
            # Log-uniform on [low, high + 1), floored: P(n) ∝ log((n + 1) / n).
            log_low, log_high = np.log(max(low, 1)), np.log(high + 1)
            log_uniform = jnp.floor(jnp.exp(jax.random.uniform(log_key, shape, minval=log_low,
                                                               maxval=log_high)))
            log_uniform = jnp.clip(log_uniform.astype(uniform.dtype), low, high)
            counts = jnp.where(scheme.reshape(lead) == 2, log_uniform, uniform)
        mask = jnp.arange(high) < counts[..., None]
        masks[name] = mask & parent[..., None]
    return masks


def _flatten_event(value: jax.Array, n_plates: int, lead: int = 0) -> jax.Array:
    head = value.shape[: lead + n_plates]
    return value.reshape(head + (-1,))


def pack_factor(values: dict[str, jax.Array], factor: Factor, graph: ModelGraph) -> jax.Array:
    """Constrained canonical values of a factor's sites → the vector its network models.

    A flow factor's sites, unconstrained and concatenated; a classifier's
    class index, as one float (see :mod:`amortize.factors`).

    Parameters
    ----------
    values : dict of str to Array
        Per target site, ``(*lead, *level_shape, *event)``.

    Returns
    -------
    Array
        ``(*lead, *level_shape, dim)`` with ``dim`` = :func:`factor_dim`.
    """
    return kind_of(factor).pack(values, factor, graph)


def factor_dim(factor: Factor, graph: ModelGraph) -> int:
    """Length of the packed vector of ``factor`` (1 for a classifier: the class index)."""
    return kind_of(factor).dim(factor, graph)


def unpack_factor(packed: jax.Array, factor: Factor, graph: ModelGraph) -> dict[str, jax.Array]:
    """Inverse of :func:`pack_factor`: ``(*lead, dim)`` → constrained ``(*lead, *event)`` per site."""
    return kind_of(factor).unpack(packed, factor, graph)


def _simulate_one(key: jax.Array, graph: ModelGraph, factorization: Factorization, sizes=None,
                  condition=None):
    model = graph.model if not condition else handlers.condition(graph.model, data=condition)
    model_kwargs = graph.program_kwargs(sizes or graph.max_sizes())
    trace = handlers.trace(handlers.seed(model, key)).get_trace(**model_kwargs)
    canonical = {name: to_canonical(trace[name]["value"], site) for name, site in graph.sites.items()}
    latents = {
        factor.name: pack_factor({n: canonical[n] for n in factor.targets}, factor, graph)
        for factor in factorization
    }
    data = {}
    for name in graph.data_names:
        site = graph.sites[name]
        data[name] = _flatten_event(canonical[name].astype(jnp.float32), len(site.path))
    return latents, data


def _design_rows(key: jax.Array, graph: ModelGraph, factorization: Factorization, design: Design, n: int):
    """``n`` data sets on ``design``: its sizes and masks, its covariates conditioned on."""
    condition = {name: from_canonical(jnp.asarray(value), graph.sites[name])
                 for name, value in design.covariates.items()}
    latents, data = jax.vmap(lambda k: _simulate_one(k, graph, factorization, design.sizes, condition))(
        jax.random.split(key, n))
    masks = {p: jnp.broadcast_to(jnp.asarray(m), (n,) + m.shape) for p, m in design.masks.items()}
    return latents, data, masks


def simulate(
    key: jax.Array, graph: ModelGraph, factorization: Factorization, batch_size: int,
    design: Design | None = None, design_share: float = 1.0, stratified: bool = False,
) -> Simulation:
    """Simulate ``batch_size`` data sets with ragged sizes (pure; jit it at the call site).

    Parameters
    ----------
    key : PRNG key
    graph, factorization : the compiled program.
    batch_size : int
    design : Design, optional
        Simulate on this observed design (:mod:`amortize.design`): its masks,
        with its covariates conditioned on. Alone (``design_share=1``), the
        arrays are padded to the design's largest sizes only.
    design_share : float
        Share of the batch simulated on ``design`` (rounded to whole data
        sets); the rest draws sizes over the training ranges, as without a
        design, and every array is padded to the largest trained sizes.
    stratified : bool
        Draw the batch's sizes stratified (see :func:`draw_masks`).

    Returns
    -------
    Simulation
    """
    sim_key, mask_key = jax.random.split(key)
    n_design = 0 if design is None else min(batch_size, max(1, round(design_share * batch_size)))
    if n_design == batch_size:
        latents, data, masks = _design_rows(sim_key, graph, factorization, design, batch_size)
    else:
        # Without a design, the same keys as ever (same seed, same simulations).
        range_key, design_key = jax.random.split(sim_key) if n_design else (sim_key, None)
        keys = jax.random.split(range_key, batch_size - n_design)
        latents, data = jax.vmap(lambda k: _simulate_one(k, graph, factorization))(keys)
        masks = draw_masks(mask_key, graph, batch_size - n_design, stratified)
        if n_design:
            rows = _design_rows(design_key, graph, factorization, design.padded_to(graph.max_sizes()), n_design)
            latents, data, masks = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), (latents, data, masks), rows)
    valid = jnp.ones((batch_size,), bool)

    def instance_mask(path):
        return masks[path[-1]] if path else jnp.ones((batch_size,), bool)

    for factor in factorization:
        mask = instance_mask(factor.path)[..., None]
        finite = jnp.isfinite(latents[factor.name]) | ~mask
        valid &= finite.reshape(batch_size, -1).all(axis=1)
        latents[factor.name] = jnp.where(mask & finite, latents[factor.name], 0.0)
    for name in graph.data_names:
        mask = instance_mask(graph.sites[name].path)[..., None]
        finite = jnp.isfinite(data[name]) | ~mask
        valid &= finite.reshape(batch_size, -1).all(axis=1)
        data[name] = jnp.where(mask & finite, data[name], 0.0)
    return Simulation(latents=latents, data=data, masks=masks, valid=valid)


def simulate_data_set(key: jax.Array, graph: ModelGraph, sizes) -> tuple[dict, dict]:
    """One data set drawn from the program with known parameters, in the form ``sample`` takes.

    Parameters
    ----------
    key : PRNG key
    graph : ModelGraph
    sizes : mapping of plate → int
        The size of every plate (rectangular: the same number of instances in every enclosing instance).

    Returns
    -------
    truth : dict of latent site → ``(*plates, *event)`` NumPy array
        The parameters the data were drawn with (plates in nesting order).
    data : dict of data site → ``(*plates, *event)`` NumPy array
        Ready for :meth:`amortize.Amortizer.sample`.
    """
    trace = handlers.trace(handlers.seed(graph.model, key)).get_trace(**graph.program_kwargs(sizes))
    values = {name: np.asarray(to_canonical(trace[name]["value"], site)) for name, site in graph.sites.items()}
    return ({n: values[n] for n in graph.latent_names}, {n: values[n] for n in graph.data_names})


def in_chunks(simulate_batch: Callable[[jax.Array, int], Any], chunk: int = 512) -> Callable[[jax.Array, int], Any]:
    """``(key, n) -> batch`` of ``n`` simulations on the host, ``chunk`` at a time.

    ``simulate_batch(key, batch_size)`` is pure; one compiled call of it at
    ``chunk`` serves every ``n``: keep the returned callable to simulate again
    without compiling again.
    """
    step = jax.jit(lambda k: simulate_batch(k, chunk))

    def run(key: jax.Array, n: int):
        parts = [jax.device_get(step(k)) for k in jax.random.split(key, math.ceil(n / chunk))]
        return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *parts)

    return run


def chunked_simulator(graph: ModelGraph, factorization: Factorization, chunk: int = 512,
                      design: Design | None = None, design_share: float = 1.0,
                      ) -> Callable[[jax.Array, int], Simulation]:
    """``(key, n) -> Simulation`` of ``n`` data sets of the program, ``chunk`` at a time, on the host.

    Pilot, validation and budget simulations of one amortizer share it (see
    :func:`in_chunks`); ``design`` and ``design_share`` as in :func:`amortize.simulate.simulate`.
    """
    return in_chunks(lambda k, n: simulate(k, graph, factorization, n, design, design_share), chunk)


def simulate_in_chunks(key, graph: ModelGraph, factorization: Factorization, n: int,
                       chunk: int = 512) -> Simulation:
    """Simulate ``n`` data sets, ``chunk`` at a time (one compiled function), on the host."""
    return chunked_simulator(graph, factorization, chunk)(key, n)
