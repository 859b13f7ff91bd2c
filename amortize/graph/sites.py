"""What a compiled program is: its levels (:class:`Plate`), sites (:class:`Site`) and graph (:class:`ModelGraph`).

Levels are plates. They must nest as a tree (each plate inside at most one
other); a site lives at the level of its innermost plate, or at the root (the
global level) when it is in no plate. :mod:`amortize.graph.model_graph`
builds these from a traced program.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Mapping

from amortize.program.trace import size_argument

__all__ = ["Plate", "Site", "ModelGraph"]


@dataclass(frozen=True)
class Plate:
    """One level of the model.

    Attributes
    ----------
    name : str
        Plate name; also the ArviZ dimension name.
    parent : str or None
        Enclosing plate (None for a top-level plate).
    path : tuple of str
        Plates from the outermost down to this one (inclusive).
    size_range : (int, int)
        Training range ``(min, max)`` of the number of instances per parent instance.
    ordered : bool
        True for an ordered (time) level: the steps of a
        ``numpyro.contrib.control_flow.scan`` whose length is the model
        argument ``n_<name>``. Its instances are steps, not exchangeable
        members of a set, and a shorter series is the start of a longer one.
    """

    name: str
    parent: str | None
    path: tuple[str, ...]
    size_range: tuple[int, int]
    ordered: bool = False

    @property
    def depth(self) -> int:
        return len(self.path)


@dataclass(frozen=True)
class Site:
    """A latent or data site with everything needed to pack and unpack it.

    Attributes
    ----------
    name : str
    role : {"latent", "data"}
    path : tuple of str
        Enclosing plates, outermost first (the site's level is ``path[-1]``).
    plate_axes : tuple of int
        For each plate of ``path``, the axis of the program's value that holds it.
    batch_ndim : int
        Number of batch dims of the program's value.
    event_shape : tuple of int
    unconstrained_shape : tuple of int
        Event shape after ``biject_to(support).inv`` (latents only).
    support : Constraint
    distribution : str
    parents : tuple of str
    num_classes : int or None
        For a finite discrete latent (a mixture indicator): its values are the
        class indices ``0 .. num_classes - 1``. None for continuous sites and data.
    folded_axes : tuple of int
        Batch axes of the program's value outside every plate, of fixed size
        (``HalfNormal(jnp.ones(2))`` without ``to_event``): treated as event
        axes, placed in front of the distribution's own event dims in
        ``event_shape``; their log densities are summed, as NUTS does.
    """

    name: str
    role: str
    path: tuple[str, ...]
    plate_axes: tuple[int, ...]
    batch_ndim: int
    event_shape: tuple[int, ...]
    unconstrained_shape: tuple[int, ...]
    support: object
    distribution: str
    dtype: object
    parents: tuple[str, ...]
    num_classes: int | None = None
    folded_axes: tuple[int, ...] = ()

    @property
    def is_discrete(self) -> bool:
        return self.num_classes is not None

    @property
    def level(self) -> str | None:
        return self.path[-1] if self.path else None

    @property
    def event_size(self) -> int:
        return math.prod(self.event_shape)

    @property
    def unconstrained_size(self) -> int:
        return math.prod(self.unconstrained_shape)

    def describe_level(self) -> str:
        return f"plate `{self.level}`" if self.path else "the global level"


@dataclass(frozen=True)
class ModelGraph:
    """The program as amortize sees it.

    Attributes
    ----------
    model : callable
        The NumPyro program.
    sites : dict of str to Site
        Latent and data sites, in program order.
    plates : dict of str to Plate
        Plates, parents before children.
    data_names : tuple of str
        Data sites, in the order the user gave them.
    has_training_ranges : bool
        False for a graph built only to run the program on data (NUTS,
        diagnostics; :func:`graph_for`): its plate ranges are placeholders, so
        data are not checked against them.
    deterministics : dict of str to Site
        ``numpyro.deterministic`` sites (also those a ``reparam`` handler
        creates) whose values lie in the plates' layout: computed from every
        posterior draw and returned with the posterior, as NumPyro's
        ``MCMC.get_samples`` does. Role ``"deterministic"``; not in ``sites``.
    """

    model: Callable
    sites: dict[str, Site]
    plates: dict[str, Plate]
    data_names: tuple[str, ...]
    has_training_ranges: bool = True
    deterministics: dict = dataclasses.field(default_factory=dict)

    def layout(self, name: str) -> Site:
        """The :class:`Site` of a sample or deterministic site (plates, axes, event shape)."""
        return self.sites[name] if name in self.sites else self.deterministics[name]

    @property
    def latent_names(self) -> tuple[str, ...]:
        return tuple(n for n, s in self.sites.items() if s.role == "latent")

    def children(self, plate: str | None) -> tuple[str, ...]:
        """Plates directly inside ``plate`` (``None``: the top-level plates)."""
        return tuple(p.name for p in self.plates.values() if p.parent == plate)

    def sites_at(self, plate: str | None, role: str) -> tuple[str, ...]:
        """Sites of ``role`` whose innermost plate is ``plate`` (``None``: global)."""
        return tuple(
            n for n, s in self.sites.items() if s.role == role and s.level == plate
        )

    @property
    def local_continuous_latents(self) -> tuple[str, ...]:
        """Continuous latent sites inside a plate: those with pooling factors (indicators have none)."""
        return tuple(n for n, s in self.sites.items() if s.role == "latent" and s.path and not s.is_discrete)

    @property
    def size_ranges(self) -> dict[str, tuple[int, int]]:
        """Training range ``(min, max)`` of every plate's size."""
        return {name: p.size_range for name, p in self.plates.items()}

    @property
    def ordered_level(self) -> Plate | None:
        """The ordered (time) level a ``scan`` forms, or None (at most one per program)."""
        return next((p for p in self.plates.values() if p.ordered), None)

    def max_sizes(self) -> dict[str, int]:
        return {name: p.size_range[1] for name, p in self.plates.items()}

    def program_kwargs(self, sizes: Mapping[str, int]) -> dict[str, int]:
        """Keyword arguments that run the program with the given plate sizes."""
        return {size_argument(p): int(n) for p, n in sizes.items()}

    def fingerprint(self) -> dict:
        """A JSON-able summary used to check a saved amortizer matches its program."""
        return {
            "sites": {
                n: {
                    "role": s.role,
                    "path": list(s.path),
                    "event_shape": list(s.event_shape),
                    "distribution": s.distribution,
                    "support": str(s.support),
                }
                for n, s in self.sites.items()
            },
            "plates": {n: [p.parent, list(p.size_range)] + (["ordered"] if p.ordered else [])
                       for n, p in self.plates.items()},
            "data": list(self.data_names),
        }
