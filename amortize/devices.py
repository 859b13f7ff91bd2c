"""Data-parallel training steps over a machine's devices.

A training step simulates a batch, evaluates the loss and its gradient, and
updates the parameters. With several devices (GPUs, TPU cores, or CPU cores
presented as host devices), each device simulates and scores its own slice
of the batch (``batch_size / devices`` data sets, from a key folded with the
device's index), and the gradients are averaged across devices before one
update, which every device applies to its replica of the parameters
(``jax.shard_map`` over a one-axis mesh named ``"batch"``). The mean of the
devices' mean losses equals the batch's mean loss when every data set is
valid; where some are left out, each device's valid data sets weigh as a
share of its slice.

On a CPU, JAX shows one device however many cores the machine has, and XLA
keeps only part of a second core busy during a step (measured on a 2-core
machine: 1.5x one core). :func:`use_cpu_cores` presents the cores as host
devices (it must run before JAX starts its CPU backend, i.e. before the
first computation); training then runs data-parallel over them.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from amortize.errors import TrainingError

__all__ = ["use_cpu_cores", "training_devices", "data_parallel", "replicated"]

AXIS = "batch"


def use_cpu_cores(count: int | None = None) -> int:
    """Present ``count`` CPU cores (default: all) to JAX as devices, for data-parallel training.

    Call it before the first JAX computation of the process (importing
    ``amortize`` computes nothing); afterwards JAX's CPU backend is fixed and
    this raises. Returns the number of CPU devices requested. Training
    (:class:`amortize.TrainConfig` ``devices``) then uses them all by default.
    The same effect: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
    in the environment.
    """
    count = int(count or os.cpu_count() or 1)
    if count < 1:
        raise ValueError(f"use_cpu_cores needs a positive number of cores; got {count}.")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as err:  # the backend is already initialized
        raise TrainingError(
            f"use_cpu_cores({count}) must run before the first JAX computation in this process ({err}). "
            f"Call it right after importing amortize, or set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={count} before starting Python.") from None
    return count


def training_devices(requested: int | None, batch_size: int) -> list:
    """The devices a training step runs on.

    ``requested=None``: all local devices of the default backend, or the
    largest number of them that divides ``batch_size`` evenly; an integer:
    exactly that many (``batch_size`` must divide evenly).
    """
    available = jax.local_devices()
    if requested is None:
        count = max(d for d in range(1, len(available) + 1) if batch_size % d == 0)
    else:
        count = int(requested)
        if not 1 <= count <= len(available):
            raise TrainingError(f"TrainConfig.devices={requested}, but this process has {len(available)} "
                                f"{jax.default_backend()} device(s). Use devices=None (all of them) or fewer; "
                                f"on a CPU, amortize.use_cpu_cores() presents the cores as devices.")
        if batch_size % count:
            raise TrainingError(f"batch_size={batch_size} does not split evenly over TrainConfig.devices={count}; "
                                f"use a batch size that is a multiple of {count}.")
    return available[:count]


def data_parallel(local_step: Callable, devices: list, sharded: tuple[bool, ...]) -> Callable:
    """Run ``local_step`` on every device's slice of the batch and average what it returns.

    Parameters
    ----------
    local_step : callable
        ``(shard_index, *args) -> (loss, grads, invalid)`` for one device's
        slice: ``shard_index`` is a scalar int (0 on one device) to fold into
        its keys, ``loss`` a scalar, ``grads`` a pytree, ``invalid`` a count.
    devices : list of devices
        From :func:`training_devices`; one device runs ``local_step`` as is.
    sharded : tuple of bool
        Per argument: split along its leading axis over the devices (True) or
        passed whole to each (False).

    Returns
    -------
    callable
        ``(*args) -> (mean loss, mean grads, total invalid)``, jittable.
    """
    if len(devices) == 1:
        return lambda *args: local_step(0, *args)
    mesh = Mesh(devices, (AXIS,))

    def body(*args):
        loss, grads, invalid = local_step(jax.lax.axis_index(AXIS), *args)
        return jax.lax.pmean(loss, AXIS), jax.lax.pmean(grads, AXIS), jax.lax.psum(invalid, AXIS)

    specs = tuple(PartitionSpec(AXIS) if s else PartitionSpec() for s in sharded)
    return jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=PartitionSpec())


def replicated(tree, devices: list):
    """``tree`` with a copy of every array on each of ``devices`` (as is on one device)."""
    if len(devices) == 1:
        return tree
    return jax.device_put(tree, NamedSharding(Mesh(devices, (AXIS,)), PartitionSpec()))
