"""The training loop every amortized network shares, and how it is configured.

:func:`optimize` trains any Flax NNX module on a loss over simulated
batches: fused, compiled chunks of steps (``lax.scan``), the learning-rate
schedule (by steps or by a wall-clock budget), skipped non-finite updates,
validation on held-out simulations, a progress bar, Ctrl-C, and
data-parallel steps over several devices (:mod:`amortize.devices`). What
is simulated and what the loss is belong to the caller: the amortizer's
posterior networks (:mod:`amortize.train`) and the model-comparison
classifier (:mod:`amortize.comparison`).

Over 400 lines, but one concept: most of it is ``TrainConfig``'s documented
settings and the one loop; the loop's parts (schedule, validation, progress,
interruption) share its state and read best together.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from amortize.devices import data_parallel, replicated, training_devices
from amortize.errors import TrainingError

__all__ = ["TrainConfig", "checked_budget", "optimize", "valid_mean"]


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
    max_data_deviation : float or None
        A simulated data set with a value farther than this many robust
        units (half the pilot's 16–84% range) from the pilot's median is left
        out of the loss, like one with a non-finite value, and counted in the
        history's ``invalid``. The choice depends on the data alone, so the
        posterior of every data set inside the bound is exactly the one the
        program implies (selecting simulations by y does not change
        p(θ | y) for the y kept); data sets outside it are not amortized
        (the summary check flags such data at sampling). ``None`` (default):
        ten times the 99th percentile of the largest deviation of each of
        ``pilot_size`` fresh simulations, kept between 300 and 1e6 (the
        bound used is ``history["max_data_deviation"]``). So only data sets
        ten times farther out than 99% of the prior predictive are left out,
        wherever the robust unit itself lies: eight schools' HalfCauchy τ
        simulates about 0.1% of data sets thousands of units out, which a
        network in mid-training scored at −log q up to 1e10 (loss spikes of
        1e5–1e8; the bound is about 400 there); a mostly-constant feature (zeros where a
        unit has fewer observations) has a tiny robust unit, and its
        ordinary values lie hundreds of units out (the bound rises with
        them); an explosive autoregression's prior draws (1e30) stay out
        (1e6). A number fixes the bound; ``inf`` keeps every finite data
        set. Training warns when more than 1% of the simulations were left
        out.
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
    devices : int or None
        Devices a training step runs on, data-parallel (:mod:`amortize.devices`):
        each simulates and scores ``batch_size / devices`` data sets and the
        gradients are averaged. ``None``: every local device of JAX's default
        backend (all GPUs; on a CPU one device unless
        :func:`amortize.use_cpu_cores` presented the cores as devices), or the
        most of them that divide the batch evenly. With one device, training
        is exactly as without this setting.
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
    max_data_deviation: float | None = None
    optimizer: Callable | None = None
    pack: bool = True
    devices: int | None = None

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

def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))

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
    devices = training_devices(config.devices, batch_size)
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    rest = replicated(rest, devices)
    tx = config.optimizer_transform()
    opt_state = tx.init(params)
    val_key, train_key, data_key = jax.random.split(key, 3)
    loss_key = jax.random.fold_in(key, 0x5C)  # keys of losses that draw from the networks
    validation = simulator(val_key, config.validation_size)
    validation = replicated(jax.device_put(validation if validation_layout is None else validation_layout(validation)),
                            devices)
    store = None
    if simulation_budget is not None:
        if simulation_budget < batch_size:
            raise ValueError(f"simulation_budget={simulation_budget} is smaller than batch_size={batch_size}.")
        store = replicated(jax.device_put(simulator(data_key, simulation_budget)), devices)

    def local_step(shard, params, step_input, loss_key, fraction, store):
        """Loss, gradients and left-out count of one device's slice of the batch."""
        if len(devices) > 1:  # each device its own simulations and loss draws
            loss_key = jax.random.fold_in(loss_key, shard)
            if store is None:
                step_input = jax.random.fold_in(step_input, shard)
        if store is None:
            sim = simulate_batch(step_input, batch_size // len(devices))
        else:
            sim = jax.tree.map(lambda x: x[step_input], store)
        (loss, _), grads = jax.value_and_grad(merged_loss, has_aux=True)(params, sim, loss_key, fraction)
        return loss, grads, jnp.sum(~sim.valid)

    # Simulation indices of a fixed budget split over the devices; keys and the store go to each whole.
    parallel_step = data_parallel(local_step, devices, sharded=(False, store is not None, False, False, False))

    def step(carry, step_input, store):
        params, opt_state = carry
        step_input, learning_rate, active, loss_key, fraction = step_input
        loss, grads, invalid = parallel_step(params, step_input, loss_key, fraction, store)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: learning_rate * u, updates)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_params)
        # A skipped update keeps the old parameters and optimizer state (no NaN
        # reaches Adam's moments). One conditional instead of a select per
        # array: XLA's CPU compiler took 3x as long over the selects.
        carry = jax.lax.cond(finite & active, lambda new, old: new, lambda new, old: old,
                             (new_params, new_opt_state), (params, opt_state))
        return carry, (loss, ~finite, invalid)

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
    carry = replicated((params, opt_state), devices)
    # The next validation: at a step count (validation_every), or at a share of the time budget.
    done, consecutive, next_eval_step, next_eval_share = 0, 0, 0, 0.0
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
            if (done >= next_eval_step) if every else (elapsed >= next_eval_share * time_limit):
                validate()
                if every:
                    next_eval_step = done + every
                else:
                    next_eval_share = elapsed / time_limit + 0.05
                if on_validation is not None:
                    nnx.update(net, jax.device_put(carry[0], devices[0]))
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
    nnx.update(net, jax.device_put(carry[0], devices[0]))
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
