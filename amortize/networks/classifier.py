"""Conditional classifiers: q(z | context) over a finite set of classes (mixture indicators)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from amortize.networks.mlp import MLP

__all__ = ["ConditionalClassifier"]


class ConditionalClassifier(nnx.Module):
    """Logits of ``classes`` classes given a context (Kucharský & Bürkner 2025).

    Parameters
    ----------
    classes : int
    context_dims : tuple of int
        Widths of the context parts (the instance's summary embedding, then
        each conditioning factor's standardized latents).
    hidden : int
        Width of the hidden layers.
    depth : int
        Number of hidden layers.
    activation : str

    Notes
    -----
    The context parts may differ in their leading axes as long as they
    broadcast (e.g. an embedding shared by all posterior draws next to
    per-draw parameters); :meth:`logits` returns ``(*broadcast lead, classes)``.
    Weights are shared over every instance of the level.
    """

    def __init__(self, classes: int, context_dims: tuple[int, ...], *, hidden: int, depth: int,
                 activation: str, rngs: nnx.Rngs):
        self.classes = classes
        self.network = MLP((sum(context_dims), *(hidden,) * depth, classes), activation=activation, rngs=rngs)

    def logits(self, context: list) -> jax.Array:
        lead = jnp.broadcast_shapes(*(part.shape[:-1] for part in context))
        inputs = jnp.concatenate([jnp.broadcast_to(p, lead + p.shape[-1:]) for p in context], axis=-1)
        return self.network(inputs)

    def log_prob(self, index: jax.Array, context: list) -> jax.Array:
        """log q(index | context): ``index (..., )`` integer classes → ``(...)``."""
        log_q = jax.nn.log_softmax(self.logits(context), axis=-1)
        return jnp.take_along_axis(log_q, index[..., None].astype(jnp.int32), axis=-1)[..., 0]
