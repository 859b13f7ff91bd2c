"""Kinds of factors: each kind's network, density, draws and packing in one module.

To add a kind: a module here with a :class:`FactorKind` subclass, its line in
:data:`KINDS`, and the rule in :func:`amortize.graph.factorize.factor_kind`
that gives a factor that kind.
"""

from amortize.factors.base import FactorDraw, FactorKind
from amortize.factors.chain import ChainKind
from amortize.factors.classifier import ClassifierKind
from amortize.factors.flow import FlowKind

__all__ = ["FactorKind", "FactorDraw", "KINDS", "kind_of"]

#: Every kind of factor, by the name its factors carry (``Factor.kind``).
KINDS: dict[str, FactorKind] = {kind.name: kind for kind in (FlowKind(), ClassifierKind(), ChainKind())}


def kind_of(factor) -> FactorKind:
    """The kind of a factor (a :class:`~amortize.graph.Factor` or a network spec's factor)."""
    return KINDS[factor.kind]
