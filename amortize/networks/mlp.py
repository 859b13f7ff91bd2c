"""Multilayer perceptrons shared by the summary, flow and classifier networks."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["MLP", "ACTIVATIONS", "KERNEL_INIT"]

ACTIVATIONS = {"gelu": jax.nn.gelu, "silu": jax.nn.silu, "relu": jax.nn.relu, "tanh": jnp.tanh}

_TRACED_KERNEL_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "uniform")


def KERNEL_INIT(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """LeCun uniform weights ``(fan_in, fan_out)``: U(±sqrt(3 / fan_in)), variance 1 / fan_in.

    Drawn on the host from a NumPy generator seeded by the key's bits: the same
    key gives the same weights, and nothing is compiled. A JAX sampler is
    compiled anew for every weight shape (0.1-0.2 s each on CPU, several
    seconds per amortizer). Under a trace, where the key has no value, the JAX
    initializer of the same distribution takes over.
    """
    if isinstance(key, jax.core.Tracer):
        return _TRACED_KERNEL_INIT(key, shape, dtype)
    seed = np.asarray(jax.random.key_data(key), np.uint32).ravel()
    limit = np.sqrt(3.0 / shape[0])
    weights = np.random.default_rng(seed).uniform(-limit, limit, size=tuple(shape))
    return jnp.asarray(weights, dtype)


class MLP(nnx.Module):
    """Dense layers with an activation between them (none after the last).

    Parameters
    ----------
    sizes : sequence of int
        ``(in_features, hidden..., out_features)``.
    activation : str
        One of :data:`ACTIVATIONS`.
    zero_last : bool
        Initialize the last layer to zero (used so that flows start at identity).
    rngs : nnx.Rngs

    Notes
    -----
    Applies to arrays of shape ``(..., in_features)`` and returns ``(..., out_features)``.
    """

    def __init__(self, sizes: Sequence[int], *, activation: str = "gelu",
                 zero_last: bool = False, rngs: nnx.Rngs):
        if len(sizes) < 2:
            raise ValueError(f"`sizes` needs input and output features; got {tuple(sizes)}.")
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            init = nnx.initializers.zeros_init() if (last and zero_last) else KERNEL_INIT
            layers.append(nnx.Linear(n_in, n_out, kernel_init=init, rngs=rngs))
        self.layers = nnx.List(layers)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)
