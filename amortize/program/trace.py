"""Tracing a NumPyro program from shapes alone.

The program is run once under ``seed`` and ``trace`` handlers inside
:func:`jax.eval_shape`, so no real array is computed at compile time. What is
kept is static: names, plates, shapes, dtypes and supports of every site.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import jax
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints, transforms
from numpyro.distributions.distribution import (
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
)
from numpyro.distributions.distribution import Unit
from numpyro.infer.inspect import get_model_relations

from amortize.errors import ModelError

__all__ = ["PlateFrame", "SiteTrace", "ProgramTrace", "trace_program", "size_argument"]


def size_argument(plate: str) -> str:
    """The model keyword argument that carries the size of ``plate``."""
    return f"n_{plate}"


@dataclass(frozen=True)
class PlateFrame:
    """A plate as one site sees it: its name, batch dim and size."""

    name: str
    dim: int
    size: int


@dataclass(frozen=True)
class SiteTrace:
    """Static description of one ``numpyro.sample`` site.

    Attributes
    ----------
    name : str
        Site name.
    plates : tuple of PlateFrame
        Enclosing plates, outermost first.
    batch_ndim : int
        Number of batch dims of the site's value as the program lays it out.
    event_shape : tuple of int
        Event shape of the site's distribution.
    dtype : numpy dtype
        Dtype of the site's value.
    distribution : str
        Class name of the (unwrapped) distribution, for messages.
    support : Constraint
        Support of the distribution (concrete: no parameter depends on another site).
    support_is_static : bool
        False when the support holds values computed from other sites.
    is_discrete : bool
        True for discrete supports.
    has_finite_support : bool
        True when the distribution can enumerate its support.
    observed_in_program : bool
        True when the program passes a fixed ``obs=`` value even with data absent.
    batch_shape : tuple of int
        The distribution's batch shape as traced.
    in_scan : bool
        True for a site inside ``numpyro.contrib.control_flow.scan``: its value
        carries the steps on a leading axis, outside every plate's axis.
    num_classes : int or None
        For a finite discrete site whose values are the class indices
        ``0 .. num_classes - 1`` (Categorical, Bernoulli): how many there are.
    """

    name: str
    plates: tuple[PlateFrame, ...]
    batch_ndim: int
    event_shape: tuple[int, ...]
    dtype: Any
    distribution: str
    support: Any
    support_is_static: bool
    is_discrete: bool
    has_finite_support: bool
    observed_in_program: bool
    batch_shape: tuple[int, ...]
    in_scan: bool = False
    num_classes: int | None = None


@dataclass(frozen=True)
class ProgramTrace:
    """Everything static that one shape-only run of a program tells.

    Attributes
    ----------
    sites : dict of str to SiteTrace
        Sample sites in program order.
    plate_parents : dict of str to str or None
        For each plate, the plate it is nested in (None at the top).
    plate_sizes : dict of str to int
        The size each plate had in this run.
    parents : dict of str to list of str
        Sample-site parents from :func:`numpyro.infer.inspect.get_model_relations`.
    deterministic : tuple of str
        Names of ``numpyro.deterministic`` sites.
    deterministic_layout : dict of str to (tuple of PlateFrame, shape, dtype)
        For each ``numpyro.deterministic`` site: its enclosing plates
        (outermost first), the shape and dtype of its value.
    factors : tuple of str
        Names of ``numpyro.factor`` sites (terms of the density with no
        generative story); they are not in ``sites``.
    subsampled : dict of plate → (size, subsample size)
        Plates declared with a ``subsample_size`` below their size.
    """

    sites: dict[str, SiteTrace]
    plate_parents: dict[str, str | None]
    plate_sizes: dict[str, int]
    parents: dict[str, list[str]]
    deterministic: tuple[str, ...]
    factors: tuple[str, ...] = ()
    deterministic_layout: dict = field(default_factory=dict)
    subsampled: dict = field(default_factory=dict)

    def masked_observations(self) -> tuple[str, ...]:
        """Sites written with ``obs_mask=``: NumPyro splits ``X`` into ``X_observed``, ``X_unobserved``
        and a deterministic ``X``."""
        return tuple(n for n in self.deterministic
                     if f"{n}_observed" in self.sites and f"{n}_unobserved" in self.sites)


def _unwrap(fn):
    while isinstance(fn, (ExpandedDistribution, Independent, MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _holds_tracer(obj) -> bool:
    leaves = [v for v in vars(obj).values()] if hasattr(obj, "__dict__") else []
    for value in leaves:
        if isinstance(value, jax.core.Tracer):
            return True
        if isinstance(value, constraints.Constraint) and _holds_tracer(value):
            return True
    return False


def _describe(site) -> SiteTrace:
    fn = site["fn"]
    base = _unwrap(fn)
    support = fn.support
    frames = tuple(
        PlateFrame(f.name, f.dim, f.size) for f in reversed(site["cond_indep_stack"])
    )
    value = site["value"]
    return SiteTrace(
        name=site["name"],
        plates=frames,
        batch_ndim=len(fn.batch_shape),
        event_shape=tuple(fn.event_shape),
        dtype=np.dtype(jax.numpy.result_type(value)),
        distribution=type(base).__name__,
        support=None if _holds_tracer(support) else support,
        support_is_static=not _holds_tracer(support),
        is_discrete=bool(support.is_discrete),
        has_finite_support=bool(getattr(base, "has_enumerate_support", False)),
        observed_in_program=bool(site["is_observed"]),
        batch_shape=tuple(fn.batch_shape),
        in_scan="_scan_current_index" in (site.get("infer") or {}),
        num_classes=_class_count(support),
    )


def _class_count(support) -> int | None:
    """Number of classes of a support ``{0, 1}`` or ``{0, ..., K - 1}`` with static K, else None."""
    if support is constraints.boolean:
        return 2
    if isinstance(support, _INTEGER_INTERVAL) and not _holds_tracer(support):
        low, high = support.lower_bound, support.upper_bound
        if np.ndim(low) == 0 and np.ndim(high) == 0 and int(low) == 0 and int(high) >= 1:
            return int(high) + 1
    return None


_INTEGER_INTERVAL = (constraints.integer_interval if isinstance(constraints.integer_interval, type)
                     else type(constraints.integer_interval))


def model_size_arguments(model: Callable) -> tuple[list[str], list[str]]:
    """Split a program's parameters into size arguments ``n_*`` and the rest.

    Raises
    ------
    ModelError
        When a parameter other than a size argument has no default, because
        amortize calls the program with the plate sizes only.
    """
    signature = inspect.signature(model)
    sizes, others = [], []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name.startswith("n_"):
            sizes.append(name)
            continue
        others.append(name)
        if parameter.default is inspect.Parameter.empty:
            raise ModelError(
                f"Model argument `{name}` has no default, so amortize cannot tell what it is: a plate's "
                f"size, an observed site's values, or a covariate. Pass one call of the program with its "
                f"data, as you would to NumPyro's MCMC.run: `am.compile(model, args=(...), kwargs={{...}}, "
                f"sizes=...)`; amortize reads every argument's role from it and leaves the program unchanged."
            )
    return sizes, others


def trace_program(model: Callable, model_kwargs: Mapping[str, int]) -> ProgramTrace:
    """Trace ``model(**model_kwargs)`` from shapes and describe every site.

    Parameters
    ----------
    model : callable
        A NumPyro program.
    model_kwargs : mapping of str to int
        Plate sizes as the program's ``n_<plate>`` keyword arguments.

    Returns
    -------
    ProgramTrace
    """
    records: dict[str, SiteTrace] = {}
    plate_parents: dict[str, str | None] = {}
    plate_sizes: dict[str, int] = {}
    deterministic: list[str] = []
    deterministic_layout: dict = {}
    factors: list[str] = []
    subsampled: dict[str, tuple[int, int]] = {}

    def run():
        seeded = handlers.seed(model, rng_seed=0)
        tr = handlers.trace(seeded).get_trace(**model_kwargs)
        for name, site in tr.items():
            if site["type"] == "sample" and isinstance(_unwrap(site["fn"]), Unit):
                factors.append(name)
            elif site["type"] == "sample":
                records[name] = _describe(site)
            elif site["type"] == "plate":
                stack = site["cond_indep_stack"]
                plate_parents[name] = stack[0].name if stack else None
                plate_sizes[name] = int(site["args"][0])
                if site["args"][1] is not None and int(site["args"][1]) < int(site["args"][0]):
                    subsampled[name] = (int(site["args"][0]), int(site["args"][1]))
            elif site["type"] == "deterministic":
                deterministic.append(name)
                frames = tuple(PlateFrame(f.name, f.dim, f.size) for f in reversed(site["cond_indep_stack"]))
                value = site["value"]
                deterministic_layout[name] = (frames, tuple(jax.numpy.shape(value)),
                                              np.dtype(jax.numpy.result_type(value)))
        return 0

    try:
        jax.eval_shape(run)
    except Exception as error:  # the program itself failed: say so with its own error
        raise ModelError(
            f"The program failed when traced with {dict(model_kwargs)}: "
            f"{type(error).__name__}: {error}"
        ) from error
    try:
        relations = get_model_relations(model, model_kwargs=dict(model_kwargs))
    except NotImplementedError as error:
        missing = sites_without_log_prob(model, model_kwargs)
        raise ModelError(
            f"Site(s) {', '.join(f'`{n}`' for n in missing) or '?'} have a distribution without a log_prob. "
            f"amortize reads the program's dependencies from its log densities, and certifies and refines "
            f"posteriors with them: give the distribution a log_prob (a simulator-only site cannot be "
            f"compiled yet)."
        ) from error
    return ProgramTrace(
        sites=records,
        plate_parents=plate_parents,
        plate_sizes=plate_sizes,
        parents={k: list(v) for k, v in relations["sample_sample"].items()},
        deterministic=tuple(deterministic),
        deterministic_layout=deterministic_layout,
        factors=tuple(factors),
        subsampled=subsampled,
    )


def sites_without_log_prob(model, model_kwargs) -> list[str]:
    """Sample sites whose distribution raises NotImplementedError from log_prob, in one seeded run."""
    trace = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(**model_kwargs)
    missing = []
    for name, site in trace.items():
        if site["type"] == "sample":
            try:
                site["fn"].log_prob(site["value"])
            except NotImplementedError:
                missing.append(name)
    return missing


def unconstrained_event_shape(support, event_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Event shape of a site's value after ``biject_to(support).inv``."""
    transform = transforms.biject_to(support)
    return tuple(transform.inverse_shape(event_shape))
