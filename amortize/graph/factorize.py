"""Posterior factorization over levels (Habermann et al. 2024, eq. 5).

For a program whose plates nest as a tree, given the latents of every
enclosing level, the instances of a plate are conditionally independent and
each depends only on the data inside it. Hence

    p(latents | data) = p(global | all data)
                        · Π_level Π_instance p(level latents | enclosing latents, data[instance]).

Latents with the same plate path form one factor; factors come in ancestral
order (a factor's conditioners are all sampled before it).
"""

from __future__ import annotations

from dataclasses import dataclass

from amortize.graph.sites import ModelGraph

__all__ = ["Factor", "Factorization", "factorize", "factor_kind"]


def factor_kind(classes: int | None, markov: bool) -> str:
    """The kind of a factor: ``"flow"`` (continuous latents), ``"classifier"`` (one mixture indicator
    per instance) or ``"chain"`` (a hidden Markov chain of indicators along an ordered level)."""
    if markov:
        return "chain"
    return "flow" if classes is None else "classifier"


@dataclass(frozen=True)
class Factor:
    """One factor of the posterior.

    Attributes
    ----------
    name : str
        ``"global"`` or the plate name.
    level : str or None
        Plate of the factor's targets (None: global).
    path : tuple of str
        Plates from the outermost down to ``level``.
    targets : tuple of str
        Latent sites inferred jointly by this factor's flow.
    conditioners : tuple of str
        Latents of the enclosing levels, sampled earlier in the ancestral pass.
    parent_factors : tuple of str
        Names of the factors that own ``conditioners``, outermost first.
    data_scope : tuple of str
        Data sites summarized for each instance (those inside ``level``).
    classes : int or None
        For a classifier factor (one finite discrete latent): its number of
        classes. None for a flow factor.
    markov : bool
        A classifier factor along an ordered level (a hidden Markov chain):
        one joint factor over the whole series of states of each enclosing
        instance, given the whole series of data, not a product over steps.
    """

    name: str
    level: str | None
    path: tuple[str, ...]
    targets: tuple[str, ...]
    conditioners: tuple[str, ...]
    parent_factors: tuple[str, ...]
    data_scope: tuple[str, ...]
    classes: int | None = None
    markov: bool = False

    @property
    def is_classifier(self) -> bool:
        """A discrete factor (an indicator or a chain of them), whose value is a class index."""
        return self.classes is not None

    @property
    def kind(self) -> str:
        """The kind of network that models this factor (see :mod:`amortize.factors`)."""
        return factor_kind(self.classes, self.markov)

    def __str__(self) -> str:
        # A Markov factor is one chain per enclosing instance, given that instance's whole
        # series: its own level indexes the target instead of forming a product.
        plates = self.path[:-1] if self.markov else self.path
        targets = f"{self.targets[0]}[{self.path[-1]}]" if self.markov else ", ".join(self.targets)
        scope = ", ".join(f"{d}[{', '.join(plates)}]" if plates else d for d in self.data_scope)
        given = ", ".join(list(self.conditioners) + ([scope] if scope else []))
        body = f"p({targets} | {given})" if given else f"p({targets})"
        return "".join(f"Π_{p} " for p in plates) + body


@dataclass(frozen=True)
class Factorization:
    """The ordered factors of a program's posterior.

    ``str(factorization)`` reads like the math, e.g.
    ``p(mu, tau, sigma | y) · Π_group p(theta | mu, tau, sigma, y[group])``.
    """

    factors: tuple[Factor, ...]

    def __str__(self) -> str:
        return " · ".join(str(f) for f in self.factors)

    def __repr__(self) -> str:
        return f"Factorization({self})"

    def __iter__(self):
        return iter(self.factors)

    def __len__(self) -> int:
        return len(self.factors)

    def __getitem__(self, name: str) -> Factor:
        for factor in self.factors:
            if factor.name == name:
                return factor
        raise KeyError(name)


def factorize(graph: ModelGraph) -> Factorization:
    """Derive the posterior factorization of ``graph``, ancestral order first.

    Continuous latents of one level form a flow factor. A finite discrete
    latent (a mixture indicator) forms a classifier factor of its own, after
    every flow factor (Kucharský & Bürkner 2025): p(θ, z | y) = p(θ | y) ·
    p(z | θ, y), where p(θ | y) is the marginal over the indicators, and each
    indicator's classifier conditions on the continuous latents of its level
    and the enclosing ones.
    """
    factors: list[Factor] = []
    classifiers: list[Factor] = []
    levels: list[str | None] = [None] + list(graph.plates)

    def continuous(level):
        return tuple(n for n in graph.sites_at(level, "latent") if not graph.sites[n].is_discrete)

    for level in levels:
        path = graph.plates[level].path if level else ()
        conditioners: list[str] = []
        parent_factors: list[str] = []
        ancestors = [None, *path[:-1]] if level else []
        for ancestor in ancestors:
            owned = continuous(ancestor)
            if owned:
                conditioners.extend(owned)
                parent_factors.append(ancestor or "global")
        scope = tuple(
            name for name in graph.data_names if graph.sites[name].path[: len(path)] == path
        )
        targets = continuous(level)
        if targets:
            factors.append(Factor(name=level or "global", level=level, path=path, targets=targets,
                                  conditioners=tuple(conditioners), parent_factors=tuple(parent_factors),
                                  data_scope=scope))
        for name in graph.sites_at(level, "latent"):
            if graph.sites[name].is_discrete:
                own = (level or "global",) if targets else ()
                classifiers.append(Factor(
                    name=name, level=level, path=path, targets=(name,),
                    conditioners=tuple(conditioners) + targets,
                    parent_factors=tuple(parent_factors) + own, data_scope=scope,
                    classes=graph.sites[name].num_classes, markov=bool(level and graph.plates[level].ordered)))
    return Factorization(tuple(factors + classifiers))
