"""What every kind of factor provides: its network, its density and its draws, and its packed values.

A *factor* is a set of latent sites that one network models jointly (see
:mod:`amortize.graph.factorize`). How that network looks, how it scores and
draws values, and how the sites' values become the network's targets depend
on the factor's *kind*: a normalizing flow for continuous latents, a
classifier for a mixture indicator, a linear-chain CRF for a hidden Markov
chain. Each kind is one module of this package implementing
:class:`FactorKind`; :data:`amortize.factors.KINDS` registers it under the
name its factors carry (``Factor.kind``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
from flax import nnx

__all__ = ["FactorKind", "FactorDraw"]


class FactorDraw(NamedTuple):
    """One factor's draws in an ancestral pass.

    Attributes
    ----------
    value : ``(B, S, *plates, dim)``
        The draws in the network's own coordinates: standardized unconstrained
        values for a kind with ``standardized``, the class index (a float) otherwise.
    log_q : ``(B, S, *plates)`` or None
        log q of each instance's draw in those coordinates (None unless asked for).
    probabilities : dict of group → ``(B, S, *plates, classes)``
        Class probabilities to report (empty for continuous factors).
    """

    value: jax.Array
    log_q: jax.Array | None
    probabilities: dict


class FactorKind:
    """The interface of one kind of factor (one instance per kind, stateless).

    Attributes
    ----------
    name : str
        The kind's name (``Factor.kind``).
    collection : str
        The attribute of :class:`~amortize.build.AmortizerNetwork` that holds
        this kind's networks (``"flows"`` or ``"classifiers"``: part of the
        saved weights' names, so kept as it was).
    standardized : bool
        Whether the network's targets are the packed values standardized per
        dimension (continuous latents) or the packed values themselves (class indices).
    per_instance : bool
        Whether :meth:`log_prob` is a sum of independent per-instance terms; a
        chain's log q is one term per chain.
    """

    name: str = ""
    collection: str = ""
    standardized: bool = True
    per_instance: bool = True

    # Packing: the sites' constrained values ↔ the factor's vector (stage: simulation).
    def dim(self, factor, graph) -> int:
        """Length of the packed vector of ``factor``."""
        raise NotImplementedError

    def pack(self, values: dict, factor, graph) -> jax.Array:
        """Per target site ``(*lead, *level_shape, *event)`` → ``(*lead, *level_shape, dim)``."""
        raise NotImplementedError

    def unpack(self, packed: jax.Array, factor, graph) -> dict:
        """Inverse of :meth:`pack`: ``(*lead, dim)`` → constrained ``(*lead, *event)`` per site."""
        raise NotImplementedError

    def unpack_and_log_det(self, packed: jax.Array, factor, graph) -> tuple[dict, dict]:
        """:meth:`unpack`, and per site the log |Jacobian| ``(*lead)`` of the map from the packed values
        (none for a kind whose values are not transformed, e.g. class indices)."""
        return self.unpack(packed, factor, graph), {}

    # The network (stage: networks).
    def network(self, factor, config, context_dims: tuple[int, ...], *, rngs: nnx.Rngs) -> nnx.Module:
        """The factor's network; ``context_dims``: widths of the embedding and each parent factor."""
        raise NotImplementedError

    def log_prob(self, module, factor, value: jax.Array, standardized: jax.Array, context: list,
                 mask: jax.Array | None) -> jax.Array:
        """log q of ``value`` (packed; ``standardized`` its standardized form), ``(B, *plates)``.

        ``context`` are the parts from :func:`amortize.build.embed` and the
        parent factors; ``mask`` the instances of the factor's level (None at the top).
        """
        raise NotImplementedError

    def draw(self, module, factor, key: jax.Array, context: list, mask: jax.Array | None,
             lead: tuple[int, ...], *, log_q: bool, defensive: tuple[float, float] | None) -> FactorDraw:
        """Draws at every instance of ``lead = (B, S, *plates)``.

        ``defensive = (alpha, c)``: draw from the defensive mixture instead of
        q, and report its log density (see :func:`amortize.build.draw_latents`).
        """
        raise NotImplementedError
