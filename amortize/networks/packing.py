"""Ragged packing: the real instances of a padded level, gathered into one array with no padding.

Training simulates data sets padded to the largest trained sizes; for ragged
designs most observation slots are padding (the core design 2–50 groups ×
1–30 observations fills about a quarter of them). A level whose instances
only feed its summary network (no latent lives there) can run its instance
encoder and pooling on the real instances alone: :func:`pack` lists them,
batch after batch, in one array of a fixed ``total`` length (one compiled
shape), with the set each belongs to; :class:`amortize.networks.summary.Packed`
pools them by segment. The result equals the padded computation up to the
order of floating-point sums.

``total`` is chosen from the size distribution (:func:`packing_total`). A
batch with more real instances than ``total`` keeps the data sets that fit,
in batch order, and reports the others (``fits``) so that training leaves
them out, like simulations with non-finite values.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from amortize.networks.summary import Packed

__all__ = ["Packing", "pack", "packing_total"]


class Packing(NamedTuple):
    """Where a level's real instances are.

    Attributes
    ----------
    rows : ``(total,)`` int
        Flat indices of the real instances into the level's padded array
        reshaped to ``(prod(mask.shape), features)``; filler rows repeat index 0.
    sets : Packed
        Each row's set (its enclosing instance, flat over ``mask.shape[:-1]``)
        and weight (0 for filler rows).
    """

    rows: jax.Array
    sets: Packed

    def gather(self, padded: jax.Array) -> jax.Array:
        """``(..., n, f)`` padded values → ``(total, f)`` packed rows."""
        return padded.reshape(-1, padded.shape[-1])[self.rows]


def pack(mask: jax.Array, total: int) -> tuple[Packing, jax.Array]:
    """List the real instances of a level, data set after data set, in ``total`` rows.

    Parameters
    ----------
    mask : ``(B, *plates, n)`` bool
        The level's instance mask (as :func:`amortize.simulate.draw_masks` gives).
    total : int
        Rows of the packed array (static: one compiled shape).

    Returns
    -------
    packing : Packing
        Its sets number ``prod(mask.shape[:-1])``, the level's enclosing
        instances in row-major order (reshape pooled results to ``mask.shape[:-1]``).
    fits : ``(B,)`` bool
        False for the data sets whose instances did not fit into ``total`` rows
        (after those of the data sets before them); they are left out of the packing.
    """
    batch, n = mask.shape[0], mask.shape[-1]
    per_data_set = jnp.sum(mask.reshape(batch, -1), axis=1)
    fits = jnp.cumsum(per_data_set) <= total
    keep = (mask & fits.reshape((batch,) + (1,) * (mask.ndim - 1))).reshape(-1)
    rows = jnp.nonzero(keep, size=total, fill_value=0)[0]
    weight = (jnp.arange(total) < jnp.sum(keep)).astype(jnp.float32)
    sets = Packed(segment=rows // n, weight=weight, num_sets=math.prod(mask.shape[:-1]))
    return Packing(rows, sets), fits


def packing_total(counts: np.ndarray, padded: int, quantum: int = 256) -> int:
    """Rows to pack a level into, from the real-instance counts of sample batches.

    ``counts`` holds, per sample batch of the training batch size, its number
    of real instances at the level (at least 64 batches). The total is the
    largest count seen plus two standard deviations of the count (about 4.5
    standard deviations above the mean: for a sum over a batch, roughly
    normal, a batch overflows about once in 300,000 steps, and then only its
    last data sets are left out), rounded up to a multiple of ``quantum`` and
    at most ``padded``, the padded array's instance slots.
    """
    counts = np.asarray(counts, float)
    total = counts.max() + 2 * counts.std()
    return int(min(math.ceil(max(total, 1.0) / quantum) * quantum, padded))
