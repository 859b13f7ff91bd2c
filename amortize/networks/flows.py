"""Conditional normalizing flows on R^dim, built from distrax bijectors.

The flow maps a standard normal ``z`` to ``x`` through coupling layers
(``distrax.MaskedCoupling``) whose element-wise bijectors are rational-quadratic
splines (Durkan et al. 2019) or affine maps (Dinh et al. 2017), followed by a
conditional element-wise affine layer that carries location and scale. Every
conditioner sees the context (summary embedding and conditioning latents);
for ``dim == 1`` the coupling masks are empty, so each layer is an element-wise
bijector whose parameters depend on the context only.

The context is projected once for all layers (one matrix product), which keeps
sampling cheap when many draws share one context.
"""

from __future__ import annotations

import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from amortize.networks.mlp import ACTIVATIONS, MLP

__all__ = ["ConditionalFlow", "coupling_mask"]

_LOG_2PI = math.log(2 * math.pi)


def coupling_mask(dim: int, layer: int) -> np.ndarray:
    """Boolean mask of the dims layer ``layer`` leaves unchanged (and conditions on).

    Cycles through checkerboard, its complement, first half and second half,
    so every dim is transformed conditioned on every other within four layers.
    Empty for ``dim == 1``.
    """
    if dim == 1:
        return np.zeros(1, bool)
    index = np.arange(dim)
    pattern = layer % 4
    if pattern == 0:
        return index % 2 == 0
    if pattern == 1:
        return index % 2 == 1
    if pattern == 2:
        return index < dim // 2
    return index >= dim // 2


class ConditionalFlow(nnx.Module):
    """q(x | context) on R^dim.

    Parameters
    ----------
    dim : int
        Event size.
    context_dims : tuple of int
        Widths of the parts of the conditioning vector (summary embedding,
        then each conditioning factor's latents).
    layers : int
        Number of coupling layers.
    hidden : int
        Hidden width of each conditioner.
    depth : int
        Hidden layers of each conditioner after the (shared) context projection.
    kind : {"spline", "affine"}
    bins : int
        Spline bins.
    bound : float
        Splines act on [-bound, bound] (standardized units) and are linear outside.
    """

    def __init__(self, dim: int, context_dims: tuple[int, ...], *, layers: int, hidden: int,
                 depth: int, kind: str, bins: int, bound: float, activation: str, rngs: nnx.Rngs):
        if kind not in ("spline", "affine"):
            raise ValueError(f"Unknown flow kind {kind!r}; use 'spline' or 'affine'.")
        self.dim, self.n_layers, self.hidden = dim, layers, hidden
        self.kind, self.bins, self.bound, self.activation = kind, bins, bound, activation
        n_params = 3 * bins + 1 if kind == "spline" else 2
        # layers couplings + one final element-wise affine layer.
        self.context_projections = nnx.List([
            nnx.Linear(max(d, 1), (layers + 1) * hidden, use_bias=i == 0, rngs=rngs)
            for i, d in enumerate(context_dims)
        ])
        self.input_projections = nnx.List(
            [nnx.Linear(dim, hidden, use_bias=False, rngs=rngs) for _ in range(layers)]
        )
        self.heads = nnx.List(
            [MLP((hidden,) * (depth + 1) + (dim * n_params,), activation=activation,
                 zero_last=True, rngs=rngs)
             for _ in range(layers)]
        )
        self.affine_head = MLP((hidden,) * (depth + 1) + (dim * 2,), activation=activation,
                               zero_last=True, rngs=rngs)

    def project_context(self, parts: list[jax.Array]) -> jax.Array:
        """Context parts ``(..., context_dims[i])`` → ``(..., layers + 1, hidden)``.

        The parts need only broadcast against each other: projecting each part
        separately and adding is the same linear map as projecting their
        concatenation, but an embedding shared by many draws is projected once.
        """
        projected = 0.0
        for part, projection in zip(parts, self.context_projections):
            if part.shape[-1] == 0:
                part = jnp.zeros(part.shape[:-1] + (1,), part.dtype)
            projected = projected + projection(part)
        return projected.reshape(projected.shape[:-1] + (self.n_layers + 1, self.hidden))

    def _bijectors(self, projected: jax.Array):
        """Bijectors in sampling order (base → data)."""
        act = ACTIVATIONS[self.activation]
        out = []
        for layer in range(self.n_layers):
            mask = coupling_mask(self.dim, layer)
            ctx = projected[..., layer, :]

            def conditioner(x, ctx=ctx, layer=layer, mask=mask):
                h = ctx
                if mask.any():
                    h = h + self.input_projections[layer](x)
                params = self.heads[layer](act(h))
                return params.reshape(params.shape[:-1] + (self.dim, -1))

            out.append(distrax.MaskedCoupling(
                mask=jnp.asarray(mask), conditioner=conditioner, bijector=self._elementwise,
                event_ndims=1))
        params = self.affine_head(act(projected[..., self.n_layers, :]))
        params = params.reshape(params.shape[:-1] + (self.dim, 2))
        out.append(distrax.Block(self._affine(params), ndims=1))
        return out

    def _elementwise(self, params):
        if self.kind == "spline":
            return distrax.RationalQuadraticSpline(params, range_min=-self.bound, range_max=self.bound)
        return self._affine(params)

    @staticmethod
    def _affine(params):
        # tanh keeps one layer's scale within e^±4: no overflow early in training.
        log_scale = 4.0 * jnp.tanh(params[..., 1] / 4.0)
        return distrax.ScalarAffine(shift=params[..., 0], log_scale=log_scale)

    def log_prob(self, x: jax.Array, projected: jax.Array) -> jax.Array:
        """log q(x | context) for ``x (..., dim)`` and ``projected (..., layers+1, hidden)``."""
        log_det = jnp.zeros(x.shape[:-1])
        for bijector in reversed(self._bijectors(projected)):
            x, ld = bijector.inverse_and_log_det(x)
            log_det = log_det + ld
        base = -0.5 * jnp.sum(x**2 + _LOG_2PI, axis=-1)
        return base + log_det

    def sample(self, key: jax.Array, projected: jax.Array) -> jax.Array:
        """One draw per context: ``projected (..., layers+1, hidden)`` → ``(..., dim)``."""
        x = jax.random.normal(key, projected.shape[:-2] + (self.dim,))
        for bijector in self._bijectors(projected):
            x = bijector.forward(x)
        return x
