"""A NumPyro program in amortize's calling convention, its body unchanged.

:class:`AdaptedProgram` wraps the user's function: called with keyword
``n_<plate>`` sizes and data and covariates by site name (``None`` to
simulate), it builds the call the function expects — placeholders for data
it simulates, covariates drawn from their design (:class:`Resampled` rows by
default), long-format rows regrouped into nested plates — and runs the
function under the handlers that make that work. What each argument is
(:class:`ArgumentRole`) is read from a call with data by
:func:`amortize.program.arguments.adapt`; this module only runs programs
whose roles are known.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.distributions import Distribution, constraints
from numpyro.primitives import CondIndepStackFrame, Messenger

from amortize.errors import ModelError

__all__ = ["AdaptedProgram", "ArgumentRole", "Resampled", "as_jax", "bind_call", "call_trace", "observed_values",
           "program_signature"]


class Resampled(Distribution):
    """Rows drawn uniformly, with replacement, from observed values: a covariate's default design.

    Parameters
    ----------
    values : array ``(n, *event)``
        The observed rows; a draw is one of them.

    The density is constant (zero on the log scale): a design's density does
    not depend on the latents, so it changes no posterior.
    """

    support = constraints.real
    pytree_data_fields = ("values",)

    def __init__(self, values, *, validate_args=None):
        self.values = jnp.asarray(values)
        super().__init__(batch_shape=(), event_shape=tuple(self.values.shape[1:]), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        index = jax.random.randint(key, tuple(sample_shape) + self.batch_shape, 0, self.values.shape[0])
        return self.values[index]

    def log_prob(self, value):
        return jnp.zeros(jnp.shape(value)[: jnp.ndim(value) - len(self.event_shape)])


@dataclass(frozen=True)
class ArgumentRole:
    """What one argument of the program is.

    Attributes
    ----------
    kind : {"size", "data", "covariate", "index", "fixed"}
    plates : tuple of (axis, plate)
        For arrays, the axes that hold the instances of a plate; for a size,
        ``((0, plate),)``.
    site : str or None
        The data site (``data``) or the covariate's site (``covariate``).
    design : Distribution or None
        What a covariate is drawn from during training.
    value : object
        The value in the call the roles were read from (shape and dtype of
        data placeholders; the value of a ``fixed`` argument).
    start : int
        Data of a series only: the number of values the argument holds before
        the site's first step, along its first axis, that the program reads as
        start values (an AR(2)'s ``init = (y[1], y[0])`` with ``y[2:]``
        observed). They are the covariate site ``<site>_start``, drawn during
        training from ``start_design``.
    start_design : Distribution or None
        Default: windows of ``start`` consecutive values of the call's series.
    conditioned : bool
        Data only: the site observes a transform of the argument (a slice, a
        transpose, ``handlers.condition``), not the argument itself; amortize
        then conditions the site on its values directly.
    """

    kind: str
    plates: tuple[tuple[int, str], ...] = ()
    site: str | None = None
    design: Any = None
    value: Any = None
    start: int = 0
    start_design: Any = None
    conditioned: bool = False

    @property
    def start_site(self) -> str | None:
        return f"{self.site}_start" if self.start else None

    def describe(self) -> str:
        where = ", ".join(f"axis {a} ↔ plate `{p}`" for a, p in self.plates)
        if self.kind == "size":
            return f"size of plate `{self.plates[0][1]}`"
        if self.kind == "data":
            start = f"; its first {self.start} values are the start values `{self.start_site}`" if self.start else ""
            return f"data of site `{self.site}` ({where}{start})" if where else f"data of site `{self.site}`"
        if self.kind == "covariate":
            return f"covariate ({where}; design {type(self.design).__name__})"
        if self.kind == "index":
            return f"group index of the rows ({where})"
        return "fixed (passed as in the call)"


def program_signature(model: Callable) -> inspect.Signature:
    """The signature of the user's function, also under NumPyro handlers (``reparam(model, ...)``)."""
    fn = model
    while isinstance(fn, Messenger) and getattr(fn, "fn", None) is not None:
        fn = fn.fn
    return inspect.signature(fn)


class _Release(Messenger):
    """Turn the named observed sites back into sampled ones (their data are placeholders).

    Also inside ``scan``, which runs its body under ``handlers.block()``: the
    body is wrapped in the same handler, and the program's own
    ``handlers.condition`` of the sites (carried into the scan on its message)
    is dropped. Sites a scan has already run are left as it drew them.
    """

    def __init__(self, fn, names):
        self.names = frozenset(names)
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "control_flow":
            body, *rest = msg["args"]
            msg["args"] = (_Release(body, self.names), *rest)
            stack = msg["kwargs"]["substitute_stack"]
            stack[:] = [(kind, _without(subs, self.names)) if kind == "condition" else (kind, subs)
                        for kind, subs in stack]
        elif msg["type"] == "sample" and msg["name"] in self.names and not msg.get("_control_flow_done"):
            msg["value"] = None
            msg["is_observed"] = False


def _without(condition, names):
    """A ``handlers.condition`` map (dict or function of the site) that leaves ``names`` alone."""
    if isinstance(condition, Mapping):
        return {n: v for n, v in condition.items() if n not in names}
    return lambda site: None if site["name"] in names else condition(site)


class _Grouped(Distribution):
    """A distribution over ``n_group * n_rows`` rows (its only batch axis) seen as ``(n_group, n_rows)``."""

    def __init__(self, base, n_group: int, n_rows: int):
        self.base, self.n_group, self.n_rows = base, n_group, n_rows
        super().__init__(batch_shape=(n_group, n_rows), event_shape=base.event_shape)

    @property
    def support(self):
        return self.base.support

    @property
    def has_enumerate_support(self):
        return self.base.has_enumerate_support

    def sample(self, key, sample_shape=()):
        value = self.base.sample(key, sample_shape)
        lead = value.shape[: len(sample_shape)]
        return value.reshape(lead + self.batch_shape + self.event_shape)

    def log_prob(self, value):
        flat = value.reshape(value.shape[: value.ndim - len(self.event_shape) - 2] + (-1,) + self.event_shape)
        log_prob = self.base.log_prob(flat)
        return log_prob.reshape(log_prob.shape[:-1] + self.batch_shape)

    @property
    def mean(self):
        return self.base.mean.reshape(self.batch_shape + self.event_shape)

    @property
    def variance(self):
        return self.base.variance.reshape(self.batch_shape + self.event_shape)


class _Regroup(Messenger):
    """Rows of plate ``rows`` that an index groups into plate ``group`` become the nested plates
    ``group > rows``: the program writes ``n_group * n_rows`` rows in long format, group by group; its
    sites in ``rows`` are seen (traced, substituted, masked) as ``(n_group, n_rows)``."""

    def __init__(self, fn, rows: str, group: str, n_group: int, n_rows: int):
        self.rows, self.group, self.n_group, self.n_rows = rows, group, n_group, n_rows
        super().__init__(fn)

    def process_message(self, msg):
        stack = msg.get("cond_indep_stack") or []
        if msg["type"] == "plate" and msg["name"] == self.rows:
            # Traced as the rows of one group, inside the group plate; the program's own plate gets its
            # long-format indices back in postprocess_message (after the trace has recorded these).
            msg["args"] = (self.n_rows,) + tuple(msg["args"][1:])
            msg["value"] = jnp.arange(self.n_rows)
            msg["cond_indep_stack"] = list(stack) + [CondIndepStackFrame(self.group, -2, self.n_group)]
            return
        if msg["type"] != "sample" or self.rows not in [f.name for f in stack]:
            return
        if len(stack) != 1 or tuple(msg["fn"].batch_shape) != (self.n_group * self.n_rows,):
            raise ModelError(
                f"Site `{msg['name']}` is inside plate `{self.rows}` (rows grouped by plate `{self.group}`) with "
                f"batch shape {tuple(msg['fn'].batch_shape)}; amortize regroups rows when `{self.rows}` is the "
                f"site's only plate, at dim -1.")
        msg["fn"] = _Grouped(msg["fn"], self.n_group, self.n_rows)
        # Innermost first, as plates append themselves.
        msg["cond_indep_stack"] = [CondIndepStackFrame(self.rows, -1, self.n_rows),
                                   CondIndepStackFrame(self.group, -2, self.n_group)]
        if msg["value"] is not None:
            value = jnp.asarray(msg["value"])
            msg["value"] = value.reshape(value.shape[:-1 - len(msg["fn"].event_shape)]
                                         + (self.n_group, self.n_rows) + tuple(msg["fn"].event_shape))


    def postprocess_message(self, msg):
        if msg["type"] == "plate" and msg["name"] == self.rows:
            msg["value"] = jnp.arange(self.n_group * self.n_rows)


class AdaptedProgram:
    """The user's program in amortize's calling convention; its body is not changed.

    Call it with ``n_<plate>=`` for every plate an argument sizes, and data
    sites and covariates by site name (``None`` or absent: simulate them).
    ``inspect.signature`` shows exactly these keyword arguments.

    Attributes
    ----------
    model : callable
        The program as its author wrote it.
    roles : dict of argument → ArgumentRole
    plates : tuple of str
        The plates whose sizes arguments carry, in program order.
    """

    def __init__(self, model: Callable, roles: Mapping[str, ArgumentRole], plates: Sequence[str],
                 groups: Mapping[str, tuple[str, str]] | None = None):
        self.model = model
        self.roles = dict(roles)
        self.plates = tuple(plates)
        self.groups = dict(groups or {})
        parameters = [inspect.Parameter(f"n_{p}", inspect.Parameter.KEYWORD_ONLY) for p in self.plates]
        parameters += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
                       for n in self.data_sites + self.covariate_sites]
        self.__signature__ = inspect.Signature(parameters)
        self.__name__ = getattr(model, "__name__", type(model).__name__)
        self.__doc__ = getattr(model, "__doc__", None)

    @property
    def data_sites(self) -> tuple[str, ...]:
        return tuple(r.site for r in self.roles.values() if r.kind == "data")

    @property
    def covariate_sites(self) -> tuple[str, ...]:
        """Covariate arguments and the start values of series (``<site>_start``)."""
        return (tuple(r.site for r in self.roles.values() if r.kind == "covariate")
                + tuple(r.start_site for r in self.roles.values() if r.start))

    def with_model(self, model: Callable) -> "AdaptedProgram":
        """The same roles around another function (a program reloaded from its module)."""
        return AdaptedProgram(model, self.roles, self.plates, self.groups)

    def data_of(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The data set of one call of the program: ``{site: values}`` for its data and covariates.

        Raises
        ------
        ModelError
            The call does not fit the program's signature.
        """
        signature = program_signature(self.model)
        try:
            bound = signature.bind(*args, **dict(kwargs or {}))
        except TypeError as error:
            raise ModelError(f"These arguments do not fit the program `{self.__name__}{signature}`: {error}.") from None
        bound.apply_defaults()
        out = {}
        observed = None
        for name, role in self.roles.items():
            if role.kind in ("data", "covariate"):
                value = bound.arguments.get(name)
                if value is None:
                    raise ModelError(f"Argument `{name}` ({role.describe()}) is None in this call; pass its values.")
                out[role.site] = np.asarray(value)
                if role.conditioned:  # what the site observes of the argument: read from the call itself
                    if observed is None:
                        observed = observed_values(call_trace(self.model, as_jax(bound.arguments)))
                    out[role.site] = np.asarray(observed[role.site])
                if role.start:
                    out[role.start_site] = np.take(np.asarray(value), np.arange(role.start), axis=0)
                rows = role.plates[0][1] if role.plates else None
                if rows in self.groups:  # long-format rows → one array per group, groups in index order
                    index = np.asarray(bound.arguments[self.groups[rows][1]])
                    out[role.site] = [out[role.site][index == g] for g in range(int(index.max()) + 1)]
        return out

    def __repr__(self) -> str:
        roles = "; ".join(f"{a}: {r.describe()}" for a, r in self.roles.items())
        return f"AdaptedProgram({self.__name__}; {roles})"

    def __call__(self, **kwargs):
        sizes = {p: int(kwargs[f"n_{p}"]) for p in self.plates}
        # Rows grouped by an index: the program sees n_group * n_rows rows in long format, group by group.
        rows = {r: sizes[g] * sizes[r] for r, (g, _) in self.groups.items()}
        values, release, condition = {}, [], {}
        for name, role in self.roles.items():
            given = kwargs.get(role.site) if role.site else None
            plate = role.plates[0][1] if role.plates else None
            if role.kind == "size":
                values[name] = rows.get(plate, sizes[plate])
            elif role.kind == "index":
                group = self.groups[plate][0]
                values[name] = np.repeat(np.arange(sizes[group]), sizes[plate]).astype(np.result_type(role.value))
            elif role.kind == "covariate":
                with contextlib.ExitStack() as stack:
                    if plate in self.groups:
                        stack.enter_context(numpyro.plate(self.groups[plate][0], sizes[self.groups[plate][0]], dim=-2))
                    stack.enter_context(numpyro.plate(plate, sizes[plate], dim=-1))
                    value = numpyro.sample(role.site, role.design, obs=given)
                # In the call's dtype: counts stay integers when data arrive as floats.
                value = jnp.asarray(value).astype(jax.dtypes.canonicalize_dtype(np.result_type(role.value)))
                values[name] = value.reshape((rows[plate],) + value.shape[2:]) if plate in rows else value
            elif role.kind == "data" and (given is None or role.conditioned):
                shape = list(np.shape(role.value))
                for axis, follows in role.plates:
                    shape[axis] = rows.get(follows, sizes[follows])
                if role.start and 0 not in dict(role.plates):
                    shape[0] -= role.start
                placeholder = jnp.zeros(shape, jnp.result_type(role.value))
                if role.start:  # a series' start values: a covariate site outside every plate
                    start = numpyro.sample(role.start_site, role.start_design, obs=kwargs.get(role.start_site))
                    placeholder = jnp.concatenate([jnp.asarray(start, placeholder.dtype), placeholder])
                values[name] = placeholder
                release.append(role.site)
                if given is not None:
                    condition[role.site] = given
            elif role.kind == "data":
                given = jnp.asarray(given)
                values[name] = given.reshape((rows[plate],) + given.shape[2:]) if plate in rows else given
            else:
                values[name] = role.value
        model = self.model
        if release:
            model = _Release(model, release)
        for rows_plate, (group, _) in self.groups.items():
            model = _Regroup(model, rows_plate, group, sizes[group], sizes[rows_plate])
        if condition:
            model = handlers.condition(model, data=condition)
        bound = bind_call(self.model, values)
        return model(*bound.args, **bound.kwargs)


def bind_call(model, values: Mapping[str, Any]) -> inspect.BoundArguments:
    signature = program_signature(model)
    positional = [p.name for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY,)]
    args = [values[n] for n in positional]
    kwargs = {n: v for n, v in values.items() if n not in positional}
    return signature.bind(*args, **kwargs)


def as_jax(values: Mapping[str, Any]) -> dict:
    """NumPy arrays as JAX arrays: a scan slices its xs with a traced index, which NumPy arrays refuse."""
    return {n: jnp.asarray(v) if isinstance(v, np.ndarray) else v for n, v in values.items()}


def call_trace(model, values: Mapping[str, Any]):
    """One seeded run of the program on the argument values ``values``: its NumPyro trace."""
    bound = bind_call(model, values)
    return handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(*bound.args, **bound.kwargs)


def observed_values(trace) -> dict[str, Any]:
    return {n: s["value"] for n, s in trace.items() if s["type"] == "sample" and s["is_observed"]}
