"""Conditional normalizing flows on R^dim, built from distrax bijectors.

The flow maps a standard normal ``z`` to ``x`` through coupling layers
(``distrax.MaskedCoupling``) whose element-wise bijectors are rational-quadratic
splines (Durkan et al. 2019; a leaner implementation of distrax's bijector,
:class:`RationalQuadraticSpline`) or affine maps (Dinh et al. 2017), followed by a
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

from amortize.networks.mlp import ACTIVATIONS, KERNEL_INIT, MLP

__all__ = ["ConditionalFlow", "RationalQuadraticSpline", "coupling_mask"]

_LOG_2PI = math.log(2 * math.pi)


_MIN_BIN = 1e-4
_MIN_SLOPE = 1e-4


class RationalQuadraticSpline(distrax.Bijector):
    """Element-wise rational-quadratic spline on [-bound, bound], linear outside.

    The same bijector as ``distrax.RationalQuadraticSpline`` (Durkan et al.
    2019; equal up to float rounding, checked in the tests) with the bin lookup
    written as one index per value (``take_along_axis``) instead of a
    per-value ``vectorize`` over one-hot masks, which XLA compiles into far
    fewer kernels: about half the time on 50,000 values and much less overhead
    on small batches on a CPU.

    Parameters
    ----------
    params : ``(..., 3 * bins + 1)``
        Unnormalized bin widths, bin heights and knot slopes.
    bound : float
    """

    def __init__(self, params: jax.Array, bound: float):
        super().__init__(event_ndims_in=0)
        bins = (params.shape[-1] - 1) // 3
        total = 2.0 * bound
        self.bins, self.bound = bins, bound
        self.widths = jax.nn.softmax(params[..., :bins], -1) * (total - bins * _MIN_BIN) + _MIN_BIN
        self.heights = jax.nn.softmax(params[..., bins:2 * bins], -1) * (total - bins * _MIN_BIN) + _MIN_BIN
        offset = math.log(math.expm1(1.0 - _MIN_SLOPE))  # slope 1 at zero input
        self.slopes = jax.nn.softplus(params[..., 2 * bins:] + offset) + _MIN_SLOPE
        # Knot positions as a matrix product (cumsum with a leading zero).
        cumulative = jnp.asarray(np.triu(np.ones((bins, bins + 1)), 1), params.dtype)
        self.x_knots = -bound + self.widths @ cumulative
        self.y_knots = -bound + self.heights @ cumulative

    def _bin(self, knots, value):
        index = jnp.sum(value[..., None] >= knots[..., 1:-1], axis=-1)
        pick = lambda a, i=index: jnp.take_along_axis(a, i[..., None], -1)[..., 0]  # noqa: E731
        return (pick(self.x_knots), pick(self.y_knots), pick(self.widths), pick(self.heights),
                pick(self.slopes), pick(self.slopes, index + 1))

    @staticmethod
    def _log_det(z, s, d0, d1):
        z1mz = z * (1.0 - z)
        denominator = s + (d0 + d1 - 2.0 * s) * z1mz
        return (2.0 * jnp.log(s) + jnp.log(d1 * z * z + 2.0 * s * z1mz + d0 * (1.0 - z) ** 2)
                - 2.0 * jnp.log(denominator))

    def _tails(self, value, inner, inner_log_det, knots_in, knots_out, inverse):
        below, above = value <= -self.bound, value >= self.bound
        first, last = self.slopes[..., 0], self.slopes[..., -1]
        if inverse:
            low = (value + self.bound) / first - self.bound
            high = (value - self.bound) / last + self.bound
            tail_log_det = jnp.where(below, -jnp.log(first), -jnp.log(last))
        else:
            low = (value + self.bound) * first - self.bound
            high = (value - self.bound) * last + self.bound
            tail_log_det = jnp.where(below, jnp.log(first), jnp.log(last))
        out = jnp.where(below, low, jnp.where(above, high, inner))
        return out, jnp.where(below | above, tail_log_det, inner_log_det)

    def forward_and_log_det(self, x):
        x0, y0, w, h, d0, d1 = self._bin(self.x_knots, x)
        s = h / w
        z = jnp.clip((x - x0) / w, 0.0, 1.0)
        z1mz = z * (1.0 - z)
        y = y0 + h * (s * z * z + d0 * z1mz) / (s + (d0 + d1 - 2.0 * s) * z1mz)
        return self._tails(x, y, self._log_det(z, s, d0, d1), self.x_knots, self.y_knots, inverse=False)

    def inverse_and_log_det(self, y):
        x0, y0, w, h, d0, d1 = self._bin(self.y_knots, y)
        s = h / w
        # Position within the bin, clipped: values outside [-bound, bound] take
        # the linear tails, and the unused spline branch must stay finite (its
        # gradient would otherwise be NaN even where it is not selected).
        t = jnp.clip((y - y0) / h, 0.0, 1.0)
        c = -s * t
        b = d0 - (d1 + d0 - 2.0 * s) * t
        a = s - b
        z = jnp.clip(_stable_quadratic_root(a, b, c), 0.0, 1.0)
        x = z * w + x0
        return self._tails(y, x, -self._log_det(z, s, d0, d1), self.y_knots, self.x_knots, inverse=True)


def _stable_quadratic_root(a, b, c):
    """The root of a z² + b z + c = 0 in [0, 1] that the spline inverse needs.

    As in distrax (Durkan et al. 2019, appendix A): the discriminant is
    clipped away from zero (a finite gradient of the square root), and the
    formula that avoids cancellation is chosen by the sign of b.
    """
    discriminant = b * b - 4.0 * a * c
    root = jnp.sqrt(jnp.clip(discriminant, jnp.finfo(discriminant.dtype).tiny))
    root = jnp.where(discriminant > 0.0, root, 0.0)
    numerator = jnp.where(b >= 0, 2.0 * c, -b + root)
    denominator = jnp.where(b >= 0, -b - root, 2.0 * a)
    return numerator / denominator


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
        Number of coupling layers (for a one-dimensional flow: none if
        affine, where they would compose into the final affine layer, and at
        most one spline).
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
        if dim == 1:
            # On one dimension there is nothing to couple: every layer is an
            # element-wise map whose parameters depend on the context alone.
            # Affine maps compose into one, so the final conditional affine layer
            # is the whole affine flow (a conditional Gaussian); one monotone
            # rational-quadratic spline before it already bends a unimodal density
            # as far as a stack would (skew, heavy shoulders), and each further
            # layer would cost a pass per draw and instance: the local factors of
            # scalar group effects set the sampling latency.
            layers = 0 if kind == "affine" else min(layers, 1)
        self.dim, self.n_layers, self.hidden = dim, layers, hidden
        self.kind, self.bins, self.bound, self.activation = kind, bins, bound, activation
        n_params = 3 * bins + 1 if kind == "spline" else 2
        # layers couplings + one final element-wise affine layer.
        self.context_projections = nnx.List([
            nnx.Linear(max(d, 1), (layers + 1) * hidden, use_bias=i == 0,
                      kernel_init=KERNEL_INIT, rngs=rngs)
            for i, d in enumerate(context_dims)
        ])
        self.input_projections = nnx.List(
            [nnx.Linear(dim, hidden, use_bias=False, kernel_init=KERNEL_INIT, rngs=rngs) for _ in range(layers)]
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
            return RationalQuadraticSpline(params, self.bound)
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

    def sample_and_log_prob(self, key: jax.Array, projected: jax.Array,
                            defensive: tuple[float, float] | None = None) -> tuple[jax.Array, jax.Array]:
        """One draw per context and its log density: ``(..., dim)`` and ``(...)``.

        The same draw as :meth:`sample` under the same key; the log density
        comes from the forward pass's Jacobians, so it costs no inverse pass.

        With ``defensive=(alpha, c)`` the draw comes from the defensive mixture
        (1 − alpha) q + alpha q_c, where q_c pushes a base normal of standard
        deviation ``c`` through the same bijectors (Hesterberg 1995): its tails
        are ``c`` times wider where the flow is linear (beyond the spline
        bound), which bounds the importance weights of a flow whose tails are
        too light. The log density returned is the mixture's.
        """
        base_key, choice_key = jax.random.split(key) if defensive else (key, None)
        x = jax.random.normal(base_key, projected.shape[:-2] + (self.dim,))
        log_q = -0.5 * jnp.sum(x**2 + _LOG_2PI, axis=-1)
        if defensive:
            alpha, c = defensive
            wide = jax.random.uniform(choice_key, x.shape[:-1] + (1,)) < alpha
            x = jnp.where(wide, c * x, x)
            standard = -0.5 * jnp.sum(x**2 + _LOG_2PI, axis=-1)
            widened = -0.5 * jnp.sum((x / c) ** 2 + _LOG_2PI, axis=-1) - self.dim * math.log(c)
            log_q = jnp.logaddexp(math.log1p(-alpha) + standard, math.log(alpha) + widened)
        for bijector in self._bijectors(projected):
            x, log_det = bijector.forward_and_log_det(x)
            log_q = log_q - log_det
        return x, log_q
