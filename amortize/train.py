"""Training: negative log posterior density of simulations, optimized with Optax.

The loss of one simulated data set is the joint negative log density of its
latents under the factorized approximation (Habermann et al. 2024, eq. 6):

    L = -log q_global(global | h(y)) - Σ_level Σ_instance log q_level(local | ..., h(y[instance])).

Online training simulates a fresh batch inside every step (the program is
jitted and vmapped inside the step; no Python loop over data sets). With a
fixed simulation budget, data sets are simulated once and reused for epochs.
Several steps run per compiled call (``lax.scan``) to keep dispatch cheap.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from amortize.build import AmortizerNetwork, NetworkSpec, Standardization, log_prob, packable_levels
from amortize.errors import TrainingError
from amortize.design import Design
from amortize.graph import Factorization, ModelGraph
from amortize.networks.packing import pack, packing_total
from amortize.simulate import Simulation, chunked_simulator, draw_masks, simulate

__all__ = ["TrainConfig", "PackedSimulation", "checked_budget", "fit_network", "optimize", "packing_totals",
           "set_standardization", "valid_mean"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train (defaults: Adam, warm-up + cosine decay, clipping at norm 1).

    Parameters
    ----------
    learning_rate : float
        Peak learning rate.
    warmup_steps : int or None
        Linear warm-up; default 2% of the steps.
    end_learning_rate_fraction : float
        Final learning rate as a fraction of the peak.
    clip_norm : float
        Global gradient-norm clipping.
    weight_decay : float
        Decoupled weight decay (0 gives Adam; otherwise AdamW).
    validation_size : int
        Held-out simulated data sets for the validation loss.
    validation_every : int or None
        Steps between validation losses; default about 20 per run (every 5%
        of the time budget when training to one).
    pilot_size : int
        Simulations used to standardize inputs and targets before training.
    steps_per_call : int
        Steps fused into one compiled call.
    max_consecutive_nonfinite : int
        Training stops with :class:`TrainingError` after this many skipped
        updates in a row.
    max_data_deviation : float
        A simulated data set with a value farther than this many robust
        units (half the pilot's 16–84% range) from the pilot's median is left
        out of the loss, like one with a non-finite value, and counted in the
        history's ``invalid``. The choice depends on the data alone, so the
        posterior of every data set inside the bound is exactly the one the
        program implies (selecting simulations by y does not change
        p(θ | y) for the y kept); data sets outside it are not amortized
        (the summary check flags such data at sampling). The default only
        removes what float32 networks cannot take (an explosive
        autoregression's prior draws reach 1e30). Heavy-tailed priors want
        less: eight schools' HalfCauchy τ simulates about 0.1% of data sets
        thousands of robust units out, which a network in mid-training scores
        at −log q up to 1e10 (single-step loss spikes of 1e5–1e8); 300 leaves
        them out (the demo's setting). Not a default, because a data feature
        that is mostly constant (zeros where a unit has fewer observations)
        has a tiny robust unit: 300 then left out 43–98% of some programs'
        simulations. ``inf`` keeps every finite data set. Training warns when
        more than 1% of the simulations were left out.
    optimizer : callable or None
        ``learning_rate -> optax.GradientTransformation`` to replace Adam(W),
        e.g. ``optax.lion``. It is called with learning rate 1; the training
        step scales its updates by :meth:`learning_rate_at`.
    pack : bool
        Run the summaries of levels where no latent lives (observations,
        usually) on their real instances only (:mod:`amortize.networks.packing`)
        during online training, wherever a batch pads the level to at least
        ``MIN_PACKED_SLOTS`` (16,384) slots and packing leaves out at least a
        quarter of them. The loss is the same up to the order of float sums;
        packed batches draw their sizes stratified (each data set's
        distribution unchanged), and the rare batch with more real instances
        than the packed length leaves its last data sets out (counted in
        ``invalid``). The validation set is packed exactly; sampling and
        training on a fixed ``simulation_budget`` stay padded.
    """

    learning_rate: float = 1e-3
    warmup_steps: int | None = None
    end_learning_rate_fraction: float = 1e-2
    clip_norm: float = 1.0
    weight_decay: float = 0.0
    validation_size: int = 256
    validation_every: int | None = None
    pilot_size: int = 1024
    steps_per_call: int = 25
    max_consecutive_nonfinite: int = 20
    max_data_deviation: float = 1e6
    optimizer: Callable | None = None
    pack: bool = True

    def __post_init__(self):
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be positive; got {self.learning_rate}.")
        for name in ("validation_size", "pilot_size", "steps_per_call", "max_consecutive_nonfinite"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer; got {getattr(self, name)}.")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["optimizer"] = None if self.optimizer is None else repr(self.optimizer)
        return out

    def optimizer_transform(self) -> optax.GradientTransformation:
        """Clipping plus the optimizer at learning rate 1.

        The training step multiplies its updates by :meth:`learning_rate_at`,
        which equals a learning-rate schedule for every optimizer whose updates
        scale linearly with the learning rate (SGD, Adam, AdamW, Lion, ...), and
        lets a time budget drive the schedule as well as a step count.
        """
        if self.optimizer is not None:
            inner = self.optimizer(1.0)
        elif self.weight_decay:
            inner = optax.adamw(1.0, weight_decay=self.weight_decay)
        else:
            inner = optax.adam(1.0)
        return optax.chain(optax.clip_by_global_norm(self.clip_norm), inner)

    def learning_rate_at(self, step: int, fraction: float, total_steps: int | None = None) -> float:
        """Learning rate of optimizer step ``step`` (0-based) at ``fraction`` of the run.

        A linear warm-up over the first ``warmup_steps`` steps (default: 2% of
        ``total_steps``, or 50 steps when training to a time budget, where the
        total is unknown) times a cosine decay from the peak to
        ``end_learning_rate_fraction`` of it as ``fraction`` goes from 0 to 1.
        ``fraction`` is ``step / total_steps``, or the elapsed share of the time
        budget.
        """
        warmup = self.warmup_steps
        if warmup is None:
            warmup = max(1, total_steps // 50) if total_steps else 50
        ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        end = self.end_learning_rate_fraction
        decay = end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))
        return self.learning_rate * ramp * decay


def checked_budget(steps: int | None, batch_size: int, time_limit: float | None) -> int | None:
    """The step count of a fit call (default 5000 without a time budget), after checking the arguments."""
    if steps is None and time_limit is None:
        steps = 5000
    if (steps is not None and steps < 1) or batch_size < 1:
        raise TrainingError(f"steps and batch_size must be positive integers; got steps={steps}, "
                            f"batch_size={batch_size}.")
    if time_limit is not None and not time_limit > 0:
        raise TrainingError(f"time_limit is in seconds and must be positive; got {time_limit}.")
    return steps


def valid_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean of ``values (B,)`` over the simulations flagged ``valid (B,)`` (0 if none is)."""
    count = jnp.maximum(jnp.sum(valid.astype(jnp.float32)), 1.0)
    return jnp.sum(jnp.where(valid, values, 0.0)) / count


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


def set_standardization(net: AmortizerNetwork, spec: NetworkSpec, pilot: Simulation) -> None:
    """Set input and target standardization from pilot simulations (in place).

    Data use median and half the 16–84% range (robust to heavy tails);
    unconstrained latents use mean and standard deviation.
    """
    valid = pilot.valid

    def level_mask(path):
        mask = pilot.masks[path[-1]] if path else np.ones(valid.shape, bool)
        return mask & valid.reshape(valid.shape + (1,) * (mask.ndim - 1))

    paths = {n: lv.path for lv in spec.levels for n, _ in lv.data} | {n: () for n, _ in spec.root_data}
    for name, path in paths.items():
        loc, scale = _masked_moments(pilot.data[name], level_mask(path), robust=True)
        net.data_loc[name] = Standardization(jnp.asarray(loc))
        net.data_scale[name] = Standardization(jnp.asarray(scale))
    for factor in spec.factors:
        if factor.is_classifier:  # class indices are targets of a softmax, not standardized
            continue
        loc, scale = _masked_moments(pilot.latents[factor.name], level_mask(factor.path), robust=False)
        net.latent_loc[factor.name] = Standardization(jnp.asarray(loc))
        net.latent_scale[factor.name] = Standardization(jnp.asarray(scale))


def _within_range(net: AmortizerNetwork, spec: NetworkSpec, sim: Simulation, bound: float) -> Simulation:
    """``sim`` with data sets farther than ``bound`` robust units from the pilot's median marked invalid
    (see ``TrainConfig.max_data_deviation``) and their data zeroed; ``net``'s standardization must be set."""
    if not np.isfinite(bound):
        return sim
    valid = sim.valid
    paths = {n: lv.path for lv in spec.levels for n, _ in lv.data} | {n: () for n, _ in spec.root_data}
    for name, path in paths.items():
        value = sim.data[name]
        inside = jnp.abs(value - net.data_loc[name][...]) < bound * net.data_scale[name][...]
        if path:
            inside |= ~sim.masks[path[-1]][..., None]
        valid &= inside.reshape(valid.shape[0], -1).all(axis=1)
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


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


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
        The history of :func:`optimize`, with ``val_loss_<factor>`` per factor.
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
    worth = [lv for lv in packable_levels(spec)
             if batch_size * math.prod(sizes[p] for p in graph.plates[lv].path) >= MIN_PACKED_SLOTS]
    if config.pack and simulation_budget is None and worth:
        if design is None:
            def masks(k):
                return draw_masks(jax.random.split(k)[1], graph, batch_size, stratified=True)  # simulate's mask key
        else:
            def masks(k):
                return simulate(k, graph, factorization, batch_size, design, design_share, stratified=True).masks
        totals = packing_totals(spec, masks, jax.random.fold_in(key, 0x9AC), levels=worth)
    if time_limit is not None:  # the budget includes choosing the packed lengths
        time_limit = max(time_limit - (time.perf_counter() - started), 1e-3)
    return optimize(
        net, loss,
        lambda k, n: _packed(_within_range(net, spec, simulate(k, graph, factorization, n, design, design_share,
                                                               stratified=bool(totals)),
                                           config.max_data_deviation), totals),
        lambda k, n: _within_range(net, spec, host(k, n), config.max_data_deviation),
        key=key, steps=steps,
        batch_size=batch_size, config=config, time_limit=time_limit,
        simulation_budget=simulation_budget, progress=progress, on_validation=on_validation,
        # The validation set is fixed: its packed length holds exactly its real instances.
        validation_layout=lambda sim: _packed(sim, {n: packing_total([np.sum(sim.masks[n])], sim.masks[n].size)
                                                    for n in totals}))


def optimize(
    net: nnx.Module,
    loss_fn: Callable,
    simulate_batch: Callable,
    simulator: Callable,
    *,
    key: jax.Array,
    steps: int | None,
    batch_size: int,
    config: TrainConfig,
    time_limit: float | None = None,
    simulation_budget: int | None = None,
    progress: bool = True,
    on_validation: Callable[[dict], None] | None = None,
    validation_layout: Callable | None = None,
) -> dict:
    """Train ``net``'s parameters in place on simulations; return the history.

    The loop every amortized network shares: fused, compiled chunks of steps,
    the learning-rate schedule (by steps or by a time budget), skipped
    non-finite updates, validation on held-out simulations and a progress bar.

    Parameters
    ----------
    net : nnx.Module
        Networks with standardization already set; ``nnx.Param`` leaves are trained.
    loss_fn : callable
        ``(net, batch, key, fraction) -> (loss, parts)``: a scalar to minimize
        and a dict of named scalars recorded at every validation as
        ``val_<name>``. ``key`` is a fresh PRNG key per step (for losses that
        draw from the networks), ``fraction`` the share of the run done
        (0 to 1; for terms switched on after a warm-up); validation passes a
        fixed key and fraction 1. Pure and jittable.
    simulate_batch : callable
        ``(key, batch_size) -> batch``, pure and jittable; ``batch.valid``
        ``(batch_size,)`` flags the simulations the loss may use.
    simulator : callable
        ``(key, n) -> batch`` on the host (validation and budget simulations).
    key : PRNG key
    steps : int or None
        Optimizer steps; with ``time_limit``, an upper bound (``None``: none).
    batch_size : int
        Simulated data sets per step.
    config : TrainConfig
    time_limit : float or None
        Wall-clock budget in seconds, compilation and validation included.
        Training stops before a chunk of steps that would overrun it, and the
        learning-rate decay follows the elapsed share of the budget, so a
        budgeted run ends at its final learning rate however fast the machine
        is. The number of steps then depends on the machine's speed.
    simulation_budget : int or None
        ``None`` trains online (fresh simulations every step); an integer
        simulates that many data sets once and cycles through them in epochs.
    progress : bool
        Show a progress bar with the loss.
    on_validation : callable, optional
        Called after every validation with the history so far, once ``net``
        holds the current weights (for checkpoints).
    validation_layout : callable, optional
        ``batch -> batch`` applied once to the validation simulations (e.g.
        packing them); ``loss_fn`` must accept what it returns.

    Returns
    -------
    dict of str to numpy array
        ``step``, ``loss`` (per step), ``learning_rate`` (per step), ``skipped``
        (per step, True where a non-finite loss or gradient was skipped),
        ``invalid`` (simulations with non-finite values left out, per step),
        ``val_step``, ``val_seconds`` (elapsed wall time), ``val_loss`` and
        ``val_<part>`` for every part of ``loss_fn``; ``interrupted`` (a
        0-d bool) is True when a KeyboardInterrupt (Ctrl-C) stopped the run:
        ``net`` then holds the weights of the last completed chunk of steps,
        and the history ends there.

    Raises
    ------
    TrainingError
        When the loss stays non-finite for ``config.max_consecutive_nonfinite`` steps.
    """
    if steps is None and time_limit is None:
        raise ValueError("Give steps, time_limit (seconds) or both.")
    started = time.perf_counter()
    deadline = None if time_limit is None else started + time_limit
    max_steps = steps if steps is not None else np.iinfo(np.int64).max
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    tx = config.optimizer_transform()
    opt_state = tx.init(params)
    val_key, train_key, data_key = jax.random.split(key, 3)
    loss_key = jax.random.fold_in(key, 0x5C)  # keys of losses that draw from the networks
    validation = simulator(val_key, config.validation_size)
    validation = jax.device_put(validation if validation_layout is None else validation_layout(validation))
    store = None
    if simulation_budget is not None:
        if simulation_budget < batch_size:
            raise ValueError(f"simulation_budget={simulation_budget} is smaller than batch_size={batch_size}.")
        store = jax.device_put(simulator(data_key, simulation_budget))

    def step(carry, step_input, store):
        params, opt_state = carry
        step_input, learning_rate, active, loss_key, fraction = step_input
        if store is None:
            sim = simulate_batch(step_input, batch_size)
        else:
            sim = jax.tree.map(lambda x: x[step_input], store)
        (loss, _), grads = jax.value_and_grad(merged_loss, has_aux=True)(params, sim, loss_key, fraction)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: learning_rate * u, updates)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_params)
        # A skipped update keeps the old parameters and optimizer state (no NaN
        # reaches Adam's moments). One conditional instead of a select per
        # array: XLA's CPU compiler took 3x as long over the selects.
        carry = jax.lax.cond(finite & active, lambda new, old: new, lambda new, old: old,
                             (new_params, new_opt_state), (params, opt_state))
        return carry, (loss, ~finite, jnp.sum(~sim.valid))

    def merged_loss(params, batch, key, fraction):
        return loss_fn(nnx.merge(graphdef, params, rest), batch, key, fraction)

    # Simulated data enter as arguments, never as closure constants, so XLA
    # neither copies them into the executable nor constant-folds them.
    run_chunk = jax.jit(
        lambda carry, inputs, store: jax.lax.scan(lambda c, x: step(c, x, store), carry, inputs),
        donate_argnums=0)
    evaluate = jax.jit(merged_loss)

    chunk = config.steps_per_call if steps is None else min(config.steps_per_call, steps)
    every = config.validation_every or (max(chunk, steps // 20) if time_limit is None else None)
    history = {"step": [], "loss": [], "learning_rate": [], "skipped": [], "invalid": [],
               "val_step": [], "val_seconds": [], "val_loss": []}
    val_parts: dict[str, list] = {}
    rng = np.random.default_rng(np.asarray(jax.random.key_data(data_key)).ravel()[-1])
    order = np.zeros(0, int)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        if time_limit is None:
            bar = tqdm(total=steps, desc="training", unit="step", dynamic_ncols=True)
        else:
            bar = tqdm(total=time_limit, desc="training", unit="s", dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")
    carry = (params, opt_state)
    # next_eval: a step count, or with a time budget and no validation_every, a fraction of it.
    done, consecutive, next_eval = 0, 0, 0
    seconds_per_step = None  # measured on every chunk
    compiled_chunk = None
    training_started, last_fraction = None, 0.0

    def validate():
        val, parts = evaluate(carry[0], validation, val_key, 1.0)
        history["val_step"].append(done)
        history["val_seconds"].append(time.perf_counter() - started)
        history["val_loss"].append(float(val))
        for name, value in parts.items():
            val_parts.setdefault(name, []).append(float(value))

    def fraction_at(step_index, now):
        """Share of the run at a step: of the steps, or of the time left after compilation."""
        nonlocal last_fraction
        if time_limit is None:
            return step_index / steps
        if training_started is None:
            return 0.0
        ahead = 0.0 if seconds_per_step is None else (step_index - done) * seconds_per_step
        # Never backwards: a chunk that ran faster than its estimate would
        # otherwise start the next one at a lower fraction.
        last_fraction = max(last_fraction, (now - training_started + ahead) / (deadline - training_started))
        return last_fraction

    interrupted = False
    try:
        while done < max_steps:
            now = time.perf_counter()
            if deadline is not None and done > 0 and now + chunk * seconds_per_step > deadline:
                break
            # Every call runs a full chunk (one compiled shape); steps past the
            # end are computed but not applied.
            n = min(chunk, max_steps - done)
            if store is None:
                inputs = jax.random.split(jax.random.fold_in(train_key, done), chunk)
            else:
                while order.size < chunk * batch_size:
                    order = np.concatenate([order, rng.permutation(simulation_budget)])
                inputs = jnp.asarray(order[: chunk * batch_size].reshape(chunk, batch_size))
                order = order[n * batch_size :]
            if compiled_chunk is None:
                # Compiled ahead of the first call, so that chunk times measure
                # the steps alone, and a time budget's schedule spans the
                # training that is left after compilation.
                shapes = (inputs, jax.ShapeDtypeStruct((chunk,), jnp.float32), jax.ShapeDtypeStruct((chunk,), bool),
                          jax.random.split(loss_key, chunk), jax.ShapeDtypeStruct((chunk,), jnp.float32))
                if bar is not None:
                    bar.set_description("compiling")
                compiled_chunk = run_chunk.lower(carry, shapes, store).compile()
                now = training_started = time.perf_counter()
                if bar is not None:
                    # Compilation is its own phase: the rate and time left count training steps only.
                    bar.set_description("training")
                    if time_limit is None:
                        bar.reset(total=steps)
            fractions = np.array([fraction_at(done + i, now) for i in range(chunk)])
            rates = np.array([config.learning_rate_at(done + i, f, steps) for i, f in enumerate(fractions)],
                             np.float32)
            chunk_inputs = (inputs, jnp.asarray(rates), jnp.arange(chunk) < n,
                            jax.random.split(jax.random.fold_in(loss_key, done), chunk), jnp.asarray(fractions, jnp.float32))
            carry, (losses, skipped, invalid) = compiled_chunk(carry, chunk_inputs, store)
            losses, skipped, invalid = (np.asarray(x)[:n] for x in (losses, skipped, invalid))
            seconds_per_step = (time.perf_counter() - now) / chunk
            for i in range(n):
                consecutive = consecutive + 1 if skipped[i] else 0
                if consecutive >= config.max_consecutive_nonfinite:
                    raise TrainingError(
                        f"The loss or its gradient was non-finite for {consecutive} steps in a "
                        f"row (up to step {done + i + 1}); those updates were skipped. Check that "
                        f"the priors give finite values, or lower TrainConfig.learning_rate "
                        f"(now {config.learning_rate})."
                    )
            history["step"].extend(range(done + 1, done + n + 1))
            history["loss"].extend(losses.tolist())
            history["learning_rate"].extend(rates[:n].tolist())
            history["skipped"].extend(skipped.tolist())
            history["invalid"].extend(invalid.tolist())
            done += n
            elapsed = time.perf_counter() - started
            if (done >= next_eval) if every else (elapsed >= next_eval * time_limit):
                validate()
                next_eval = done + every if every else elapsed / time_limit + 0.05
                if on_validation is not None:
                    nnx.update(net, carry[0])
                    on_validation({k: np.asarray(v) for k, v in history.items()})
            if bar is not None:
                if time_limit is None:
                    bar.update(n)
                else:
                    bar.n = min(time.perf_counter() - started, time_limit)
                    bar.refresh()
                bar.set_postfix(step=done, loss=f"{np.nanmean(losses):.3f}",
                                val=f"{history['val_loss'][-1]:.3f}")
    except KeyboardInterrupt:
        # Ctrl-C: keep what the completed steps learned. carry only ever holds a completed chunk's
        # result; the per-step records are cut to the steps that made it into all of them.
        interrupted = True
        done = min(len(history[k]) for k in ("step", "loss", "learning_rate", "skipped", "invalid"))
        for k in ("step", "loss", "learning_rate", "skipped", "invalid"):
            del history[k][done:]
        kept = min(len(history[k]) for k in ("val_step", "val_seconds", "val_loss"))
        kept = min([kept] + [len(v) for v in val_parts.values()])
        for values in [history["val_step"], history["val_seconds"], history["val_loss"], *val_parts.values()]:
            del values[kept:]
    finally:
        if bar is not None:
            bar.close()
    if not history["val_step"] or history["val_step"][-1] != done:
        validate()
    nnx.update(net, carry[0])
    if interrupted:
        warnings.warn(f"Training interrupted after {done} steps; the networks keep what those steps learned "
                      f"(history['interrupted'] is True). Call fit again to train on.",
                      RuntimeWarning, stacklevel=3)
    out = {k: np.asarray(v) for k, v in history.items()}
    for name, values in val_parts.items():
        out[f"val_{name}"] = np.asarray(values)
    out["interrupted"] = np.asarray(interrupted)
    n_invalid, n_simulated = int(out["invalid"].sum()), max(len(out["invalid"]) * batch_size, 1)
    if n_invalid > 0.01 * n_simulated:
        warnings.warn(
            f"{n_invalid} of {n_simulated} simulated data sets ({n_invalid / n_simulated:.1%}) were left out of "
            f"training: non-finite values, more instances than a packed batch holds, or data farther than "
            f"TrainConfig.max_data_deviation robust units from the pilot's median (see history['invalid']). "
            f"Data like those are not amortized; if your data can be that extreme, raise max_data_deviation or "
            f"transform the data (a log scale for positive, heavy-tailed data).", RuntimeWarning, stacklevel=3)
    n_skipped = int(out["skipped"].sum())
    if n_skipped:
        warnings.warn(
            f"{n_skipped} of {done} updates were skipped because the loss or its gradient "
            f"was non-finite (see history['skipped']).", RuntimeWarning, stacklevel=3)
    return out
