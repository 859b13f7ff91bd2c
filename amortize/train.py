"""Training: negative log posterior density of simulations, optimized with Optax.

The loss of one simulated data set is the joint negative log density of its
latents under the factorized approximation (Habermann et al. 2024, eq. 6):

    L = -log q_global(global | h(y)) - Σ_level Σ_instance log q_level(local | ..., h(y[instance])).

Online training simulates a fresh batch inside every step (the program is
jitted and vmapped inside the step; no Python loop over data sets). With a
fixed simulation budget, data sets are simulated once and reused for epochs.
This module owns what the amortizer's training is made of: input and target
standardization from pilot simulations, leaving out unusable simulations,
packed batches, and that loss; the loop itself (compiled chunks of steps,
schedule, validation, devices) is :func:`amortize.loop.optimize`.
"""

from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from amortize.build import (AmortizerNetwork, NetworkSpec, Standardization, SummarizedNetwork, log_prob,
                            packable_levels)
from amortize.design import Design
from amortize.devices import training_devices
from amortize.factors import kind_of
from amortize.graph import Factorization, ModelGraph
from amortize.loop import TrainConfig, checked_budget, optimize, valid_mean
from amortize.networks.packing import pack, packing_total
from amortize.simulate import Simulation, chunked_simulator, draw_masks, simulate

# TrainConfig, checked_budget, optimize and valid_mean live in amortize.loop; they are
# re-exported here, where they have always been importable from.
__all__ = ["TrainConfig", "PackedSimulation", "checked_budget", "fit_network", "optimize", "packing_totals",
           "set_standardization", "valid_mean"]


def _masked_moments(values: np.ndarray, mask: np.ndarray, robust: bool):
    flat = values.reshape(-1, values.shape[-1])[mask.reshape(-1)]
    if flat.shape[0] == 0:
        return np.zeros(values.shape[-1]), np.ones(values.shape[-1])
    if robust:
        loc = np.median(flat, axis=0)
        scale = (np.percentile(flat, 84, axis=0) - np.percentile(flat, 16, axis=0)) / 2
    else:
        loc, scale = flat.mean(axis=0), flat.std(axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-8), scale, 1.0)
    return loc.astype(np.float32), scale.astype(np.float32)


def set_standardization(net: SummarizedNetwork, spec: NetworkSpec, pilot: Simulation) -> None:
    """Set input and target standardization from pilot simulations (in place).

    ``net`` is any network with the hierarchical summary; the targets' (the
    factors' latents) only where ``spec`` has factors, i.e. for an
    :class:`~amortize.build.AmortizerNetwork`.

    Data use median and half the 16–84% range (robust to heavy tails);
    unconstrained latents use mean and standard deviation.
    """
    valid = pilot.valid

    def level_mask(path):
        mask = pilot.masks[path[-1]] if path else np.ones(valid.shape, bool)
        return mask & valid.reshape(valid.shape + (1,) * (mask.ndim - 1))

    for name, path in _data_paths(spec).items():
        loc, scale = _masked_moments(pilot.data[name], level_mask(path), robust=True)
        net.data_loc[name] = Standardization(jnp.asarray(loc))
        net.data_scale[name] = Standardization(jnp.asarray(scale))
    for factor in spec.factors:
        if not kind_of(factor).standardized:  # e.g. class indices: targets of a softmax
            continue
        loc, scale = _masked_moments(pilot.latents[factor.name], level_mask(factor.path), robust=False)
        net.latent_loc[factor.name] = Standardization(jnp.asarray(loc))
        net.latent_scale[factor.name] = Standardization(jnp.asarray(scale))


#: The default bound on simulated data (``TrainConfig.max_data_deviation=None``): this many times
#: the 99th percentile of the pilot data sets' largest deviations, kept within these limits.
DEVIATION_MARGIN, DEVIATION_LIMITS = 10.0, (300.0, 1e6)


def _data_paths(spec: NetworkSpec) -> dict[str, tuple[str, ...]]:
    return {n: lv.path for lv in spec.levels for n, _ in lv.data} | {n: () for n, _ in spec.root_data}


def data_deviation(net: AmortizerNetwork, spec: NetworkSpec, sim: Simulation) -> jax.Array:
    """Each data set's largest distance from the pilot's median, in robust units, over its real entries.

    Returns ``(batch,)``; NaN where a value is NaN. ``net``'s standardization must be set.
    """
    worst = jnp.zeros(sim.valid.shape[0])
    for name, path in _data_paths(spec).items():
        value = jnp.abs(sim.data[name] - net.data_loc[name][...]) / net.data_scale[name][...]
        if path:
            value = jnp.where(sim.masks[path[-1]][..., None], value, 0.0)
        worst = jnp.maximum(worst, value.reshape(worst.shape[0], -1).max(axis=1))  # NaN propagates
    return worst


def deviation_bound(net: AmortizerNetwork, spec: NetworkSpec, pilot: Simulation) -> float:
    """The default bound of ``TrainConfig.max_data_deviation`` (robust units): ``DEVIATION_MARGIN``
    times the 99th percentile of ``pilot``'s data sets' :func:`data_deviation`, within ``DEVIATION_LIMITS``."""
    deviation = np.asarray(data_deviation(net, spec, pilot))[np.asarray(pilot.valid)]
    deviation = deviation[np.isfinite(deviation)]
    if deviation.size == 0:
        return DEVIATION_LIMITS[1]
    return float(np.clip(DEVIATION_MARGIN * np.percentile(deviation, 99), *DEVIATION_LIMITS))


def _within_range(net: AmortizerNetwork, spec: NetworkSpec, sim: Simulation, bound: float) -> Simulation:
    """``sim`` with data sets farther than ``bound`` robust units from the pilot's median marked invalid
    (see ``TrainConfig.max_data_deviation``) and their data zeroed; ``net``'s standardization must be set."""
    if not np.isfinite(bound):
        return sim
    valid = sim.valid & (data_deviation(net, spec, sim) < bound)
    data = {n: jnp.where(valid.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0.0) for n, v in sim.data.items()}
    return sim._replace(data=data, valid=valid)


class PackedSimulation(NamedTuple):
    """A training batch with the packing of its levels (:mod:`amortize.networks.packing`).

    ``sim.valid`` already excludes the data sets that did not fit.
    """

    sim: Simulation
    packing: dict

    @property
    def valid(self) -> jax.Array:
        return self.sim.valid


#: A level is packed only where a training batch pads it to at least this many instance slots: below
#: that, choosing the packed length (a compiled pass over 64 sample batches) costs more than it saves.
MIN_PACKED_SLOTS = 16384


def packing_totals(spec: NetworkSpec, sample_masks: Callable[[jax.Array], dict], key: jax.Array,
                   batches: int = 64, levels: list[str] | None = None) -> dict[str, int]:
    """Packed lengths of the levels worth packing, from the masks of ``batches`` sample batches.

    Parameters
    ----------
    sample_masks : callable
        ``key -> masks`` of one training batch (plate → ``(B, *plates)``), jittable.
    levels : list of str, optional
        Candidates, a subset of :func:`amortize.build.packable_levels` (default: all of them).

    Returns
    -------
    dict of plate → int
        Levels of :func:`amortize.build.packable_levels` whose packed length
        (:func:`amortize.networks.packing.packing_total`) is at most three
        quarters of their padded slots.
    """
    levels = packable_levels(spec) if levels is None else levels
    if not levels:
        return {}
    counts = jax.jit(jax.vmap(lambda k: {n: jnp.sum(m) for n, m in sample_masks(k).items() if n in levels}))(
        jax.random.split(key, batches))
    shapes = jax.eval_shape(sample_masks, key)
    totals = {}
    for name in levels:
        padded = math.prod(shapes[name].shape)
        total = packing_total(np.asarray(counts[name]), padded)
        if total <= 0.75 * padded:
            totals[name] = total
    return totals


def _packed(sim: Simulation, totals: dict[str, int]) -> Simulation | PackedSimulation:
    if not totals:
        return sim
    packing, valid = {}, sim.valid
    for name, total in totals.items():
        packing[name], fits = pack(sim.masks[name], total)
        valid &= fits
    return PackedSimulation(sim._replace(valid=valid), packing)


def _unpacked(batch: Simulation | PackedSimulation) -> tuple[Simulation, dict | None]:
    """A batch's simulations and the packing of its levels (None for a padded batch)."""
    return (batch.sim, batch.packing) if isinstance(batch, PackedSimulation) else (batch, None)


def _negative_log_posterior(net: AmortizerNetwork, spec: NetworkSpec, batch: Simulation | PackedSimulation):
    """Mean over valid simulations of -log q(latents | data), in total and per factor."""
    sim, packing = _unpacked(batch)
    per_factor = log_prob(net, spec, sim.latents, sim.data, sim.masks, packing=packing)
    total = sum(per_factor.values())
    return -valid_mean(total, sim.valid), {f"loss_{name}": -valid_mean(values, sim.valid)
                                           for name, values in per_factor.items()}

def fit_network(
    net: AmortizerNetwork,
    spec: NetworkSpec,
    graph: ModelGraph,
    factorization: Factorization,
    *,
    key: jax.Array,
    steps: int | None,
    batch_size: int,
    config: TrainConfig,
    time_limit: float | None = None,
    simulation_budget: int | None = None,
    progress: bool = True,
    simulator: Callable[[jax.Array, int], Simulation] | None = None,
    on_validation: Callable[[dict], None] | None = None,
    design: Design | None = None,
    design_share: float = 1.0,
    extra_loss: Callable | None = None,
) -> dict:
    """Train ``net`` in place on the negative log posterior density; return the history.

    Parameters
    ----------
    net : AmortizerNetwork
        Networks with standardization already set.
    key : PRNG key
    steps, batch_size, config, time_limit, simulation_budget, progress :
        As in :func:`optimize`.
    simulator : callable, optional
        A :func:`chunked_simulator` of this graph to reuse (saves its compilation).
    on_validation : callable, optional
        As in :func:`optimize` (checkpoints).
    design, design_share :
        Simulate on an observed design (all of the batch, or this share of
        it); see :func:`amortize.simulate.simulate`.
    extra_loss : callable, optional
        ``(net, sim, key, fraction) -> (value, parts)`` added to the negative
        log posterior (e.g. :func:`amortize.refine.consistency.self_consistency_loss`);
        its parts are recorded at every validation.

    Returns
    -------
    dict of str to numpy array
        The history of :func:`optimize`, with ``val_loss_<factor>`` per factor and
        ``max_data_deviation``, the bound on simulated data used (robust units).
    """
    def loss(network, batch, key, fraction):
        value, parts = _negative_log_posterior(network, spec, batch)
        if extra_loss is None:
            return value, parts
        extra, extra_parts = extra_loss(network, _unpacked(batch)[0], key, fraction)
        return value + extra, parts | extra_parts

    host = simulator or chunked_simulator(graph, factorization, design=design, design_share=design_share)
    totals, started = {}, time.perf_counter()
    sizes = graph.max_sizes()
    local_batch = batch_size // len(training_devices(config.devices, batch_size))  # what one device simulates
    worth = [lv for lv in packable_levels(spec)
             if local_batch * math.prod(sizes[p] for p in graph.plates[lv].path) >= MIN_PACKED_SLOTS]
    if config.pack and simulation_budget is None and worth:
        if design is None:
            def masks(k):
                return draw_masks(jax.random.split(k)[1], graph, local_batch, stratified=True)  # simulate's mask key
        else:
            def masks(k):
                return simulate(k, graph, factorization, local_batch, design, design_share, stratified=True).masks
        totals = packing_totals(spec, masks, jax.random.fold_in(key, 0x9AC), levels=worth)
    bound = config.max_data_deviation
    if bound is None:
        bound = deviation_bound(net, spec, host(jax.random.fold_in(key, 0xB0D), config.pilot_size))
    if time_limit is not None:  # the budget includes choosing the packed lengths and the bound
        time_limit = max(time_limit - (time.perf_counter() - started), 1e-3)
    history = optimize(
        net, loss,
        lambda k, n: _packed(_within_range(net, spec, simulate(k, graph, factorization, n, design, design_share,
                                                               stratified=bool(totals)), bound), totals),
        lambda k, n: _within_range(net, spec, host(k, n), bound),
        key=key, steps=steps,
        batch_size=batch_size, config=config, time_limit=time_limit,
        simulation_budget=simulation_budget, progress=progress, on_validation=on_validation,
        # The validation set is fixed: its packed length holds exactly its real instances.
        validation_layout=lambda sim: _packed(sim, {n: packing_total([np.sum(sim.masks[n])], sim.masks[n].size)
                                                    for n in totals}))
    history["max_data_deviation"] = np.asarray(bound)
    return history

