"""Multilayer perceptrons shared by the summary, flow and classifier networks."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["MLP", "ACTIVATIONS"]

ACTIVATIONS = {"gelu": jax.nn.gelu, "silu": jax.nn.silu, "relu": jax.nn.relu, "tanh": jnp.tanh}


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
            init = nnx.initializers.zeros_init() if (last and zero_last) else nnx.initializers.lecun_normal()
            layers.append(nnx.Linear(n_in, n_out, kernel_init=init, rngs=rngs))
        self.layers = nnx.List(layers)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)
