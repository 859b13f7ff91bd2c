"""A NumPyro program as its author wrote it, called the way amortize calls programs.

NumPyro programs take their data as ordinary arguments, positional or not:
``def eight_schools(J, sigma, y=None)`` takes the number of schools, the
standard errors (a covariate) and the observed effects, and sizes its plate
from ``J``; ``def model(data)`` sizes its plate with ``len(data)``. amortize
needs three things of every argument to simulate training data sets: is it a
plate's size, an observed site's values, or a covariate (an input that is
observed but not modelled)?

:func:`adapt` reads the roles from one call of the program with real data —
the call a NumPyro user makes anyway (``mcmc.run(key, J, sigma, y=y)``):

* an argument passed as the ``obs=`` of a sample site is that site's data;
* an argument is *per instance* of plate ``P`` along an axis (or, for an
  integer, is ``P``'s size) when the program, called again with that axis one
  longer (the integer one larger), opens ``P`` one larger and every other
  plate unchanged — all arguments of the same plate are lengthened together;
* a per-instance argument that is not data is a covariate: during training
  it is drawn from a design distribution (by default, rows resampled from the
  values of the call);
* anything else is passed as it was in the call.

A ``numpyro.contrib.control_flow.scan`` forms an ordered level (named by the
one key of ``compile``'s ``sizes`` that is not a plate): its length follows
the arguments whose lengthening adds a step; its sites are simulated inside
the scan (the program's own ``handlers.condition`` of them is lifted there);
a site that observes a transform of an argument (``y[2:]``) is conditioned on
directly, and values of the argument before the observed ones (an AR(p)'s
start values) become the covariate ``<site>_start``.

:class:`AdaptedProgram` is the program in amortize's calling convention —
keyword ``n_<plate>`` sizes, data and covariates by site name, ``None`` to
simulate — wrapping the unchanged function. Covariates become data sites of
their own (their distribution is the design: constant in the latents, so it
changes no posterior).
"""

from __future__ import annotations

import contextlib
import dataclasses
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

__all__ = ["AdaptedProgram", "ArgumentRole", "Resampled", "adapt", "program_signature"]


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
                        observed = _observed(_call_trace(self.model, _as_jax(bound.arguments)))
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
        bound = _bind(self.model, values)
        return model(*bound.args, **bound.kwargs)


def _bind(model, values: Mapping[str, Any]) -> inspect.BoundArguments:
    signature = program_signature(model)
    positional = [p.name for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY,)]
    args = [values[n] for n in positional]
    kwargs = {n: v for n, v in values.items() if n not in positional}
    return signature.bind(*args, **kwargs)


def _as_jax(values: Mapping[str, Any]) -> dict:
    """NumPy arrays as JAX arrays: a scan slices its xs with a traced index, which NumPy arrays refuse."""
    return {n: jnp.asarray(v) if isinstance(v, np.ndarray) else v for n, v in values.items()}


def _call_trace(model, values: Mapping[str, Any]):
    """One seeded run of the program on the argument values ``values``: its NumPyro trace."""
    bound = _bind(model, values)
    return handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(*bound.args, **bound.kwargs)


def _plates(trace) -> dict[str, int]:
    """Plate sizes, also of plates opened inside a ``scan`` body (known from its sites' frames only)."""
    inner = {f.name: int(f.size) for s in trace.values() if s["type"] == "sample"
             for f in s.get("cond_indep_stack") or ()}
    return {**inner, **{n: int(s["args"][0]) for n, s in trace.items() if s["type"] == "plate"}}


def _steps(trace) -> int | None:
    """The number of steps of the program's ``scan`` (None without one)."""
    return next((int(np.shape(s["value"])[0]) for s in trace.values() if s["type"] == "sample" and _in_scan(s)),
                None)


def _observed(trace) -> dict[str, Any]:
    return {n: s["value"] for n, s in trace.items() if s["type"] == "sample" and s["is_observed"]}


def _check_data_only_observed(model, values, observed_by: Mapping[str, str], reference,
                              starts: Mapping[str, int] | None = None) -> None:
    """Refuse a data argument whose values the program also uses elsewhere (``Normal(y.mean(), 1)``).

    amortize simulates the data sites, and the program sees placeholders for their arguments while it
    does; a program that reads them for anything but ``obs=`` would train on a different model than it
    is applied to. Test: with every latent held at one draw, changing the argument's values may change
    no other site's density, nor its own site's outside a scan (inside one, each step's density reads
    the steps before it through the carry). ``reference`` is the trace of the call itself; a series'
    ``starts`` (start values, a covariate of their own) are kept.
    """
    latents = {n: s["value"] for n, s in reference.items() if s["type"] == "sample" and not s["is_observed"]}

    def densities(call_values):
        bound = _bind(model, call_values)
        trace = handlers.trace(handlers.substitute(handlers.seed(model, rng_seed=0), data=latents)).get_trace(
            *bound.args, **bound.kwargs)
        return {n: s for n, s in trace.items() if s["type"] == "sample"}

    before = densities(values)
    for site, name in observed_by.items():
        if not np.issubdtype(np.asarray(values[name]).dtype, np.floating):
            continue  # counts and classes: a shifted copy would leave the support
        after = densities({**values, name: _shifted(values[name], (starts or {}).get(site, 0))})
        for other, entry in before.items():
            if other not in after or (other == site and _in_scan(entry)):
                continue
            point = entry["value"]  # the call's value, also for the data site itself
            if not np.allclose(np.asarray(entry["fn"].log_prob(point)), np.asarray(after[other]["fn"].log_prob(point)),
                               rtol=1e-5, atol=1e-6, equal_nan=True):
                raise ModelError(
                    f"Argument `{name}` is observed at site `{site}`, but the program also uses its values "
                    f"elsewhere (the density of `{other}` changes with them). amortize simulates `{site}` during "
                    f"training, so the program would learn from a different model than the one it is applied "
                    f"to. Compute what the program takes from the data outside it and pass it as an argument "
                    f"(fixed), or sample this program with NUTS (`am.reference.nuts`).")


def _shifted(value, start: int = 0):
    """The values changed (integers one up, floats stretched and moved); the first ``start`` along axis 0 kept."""
    xp = jnp if isinstance(value, jax.Array) else np
    value = xp.asarray(value)
    changed = value + 1 if np.issubdtype(value.dtype, np.integer) else value * 1.5 + 1.0
    if start:
        changed = xp.concatenate([value[:start], changed[start:]])
    return changed


def _in_scan(site) -> bool:
    return "_scan_current_index" in (site.get("infer") or {})


def _scan_trace(model, values):
    """The call's trace on ``values`` (JAX arrays: a scan slices its xs with a traced index, which NumPy
    arrays refuse) when a sample site runs inside ``numpyro.contrib.control_flow.scan``; None otherwise."""
    try:
        trace = _call_trace(model, values)
    except Exception:  # the program's own failure is reported by the trace that follows
        return None
    return trace if any(_in_scan(s) for s in trace.values() if s["type"] == "sample") else None


def _lengthened(value, axis: int):
    xp = jnp if isinstance(value, jax.Array) else np
    value = xp.asarray(value)
    last = xp.take(value, xp.asarray([-1]), axis=axis)
    return xp.concatenate([value, last], axis=axis)


def _is_size(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _perturbed(values: Mapping[str, Any], followers) -> dict:
    out = dict(values)
    for name, axis in followers:
        out[name] = out[name] + 1 if axis is None else _lengthened(out[name], axis)
    return out


def _scan_followers(model, values: Mapping[str, Any], plates: Mapping[str, int], steps: int,
                    taken) -> list:
    """The (argument, axis) pairs the scan's number of steps follows (axis None: an integer length):
    lengthened together, the scan takes one step more and every plate keeps its size. An axis may be up
    to eight longer than the scan (an AR(p)'s series holds p start values before its first step)."""
    ints = [(n, None) for n, v in values.items() if _is_size(v) and int(v) == steps]
    arrays = [(n, a) for n, v in values.items() if not _is_size(v) and isinstance(v, (np.ndarray, jax.Array))
              for a, extent in enumerate(np.shape(v)) if steps <= extent <= steps + 8 and (n, a) not in taken]
    tries = [ints + arrays, arrays] + [[i] + arrays for i in ints] + [[c] for c in ints + arrays]
    return _first_lengthening(model, values, tries,
                              lambda trace: _plates(trace) == dict(plates) and _steps(trace) == steps + 1)


def _first_lengthening(model, values: Mapping[str, Any], tries, accepts) -> list:
    """The first non-empty set of (argument, axis) pairs in ``tries`` whose lengthening (an integer raised
    by one) gives a call whose trace ``accepts``; ``[]`` if none does."""
    for candidates in tries:
        if not candidates:
            continue
        try:
            trace = _call_trace(model, _perturbed(values, candidates))
        except Exception:  # a lengthened argument the program cannot take: not this set
            continue
        if accepts(trace):
            return candidates
    return []


def _start(argument, value) -> int:
    """How many values along axis 0 the argument holds before the ones a scanned site observes (``y[2:]``)."""
    argument, value = np.asarray(argument), np.asarray(value)
    extent, steps = argument.shape[0] if argument.ndim else 0, value.shape[0] if value.ndim else 0
    for start in range(1, extent - steps + 1):
        if argument.shape[1:] == value.shape[1:] and np.array_equal(argument[start:start + steps], value):
            return start
    return 0


def _followers(model, values: Mapping[str, Any], plates: Mapping[str, int]) -> dict[str, list]:
    """Per plate, the (argument, axis) pairs it is sized by (axis None: an integer size)."""
    found = {}
    for plate, size in plates.items():
        ints = [(n, None) for n, v in values.items() if _is_size(v) and int(v) == size]
        arrays = [(n, a) for n, v in values.items() if not _is_size(v) and isinstance(v, (np.ndarray, jax.Array))
                  for a, extent in enumerate(np.shape(v)) if extent == size]
        expected = {p: s + (p == plate) for p, s in plates.items()}
        candidates = _first_lengthening(model, values, [ints + arrays, arrays] + [[i] + arrays for i in ints],
                                        lambda trace: _plates(trace) == expected)
        if candidates:
            found[plate] = candidates
    return found


def adapt(model: Callable, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
          covariates: Mapping[str, Any] | None = None, data: Sequence[str] | None = None,
          sizes: Mapping[str, Any] | None = None) -> AdaptedProgram:
    """Read each argument's role from one call ``model(*args, **kwargs)`` with real data.

    Parameters
    ----------
    model : callable
        The NumPyro program, unchanged.
    args, kwargs
        A call with observed data, as given to NumPyro's ``MCMC.run``.
    covariates : mapping of argument → Distribution, optional
        The design a covariate is drawn from during training, per instance
        of its plate (default: the call's rows, resampled).
    data : sequence of str, optional
        The observed sites; default: every site observed through an argument.
    sizes : mapping, optional
        ``compile``'s training ranges; a program with a ``scan`` names its
        ordered level there (the one key that is not a plate of the call).

    Returns
    -------
    AdaptedProgram

    Raises
    ------
    ModelError
        The call fails; an argument's role cannot be told; a covariate that
        does not follow exactly one top-level plate along its first axis.
    """
    signature = program_signature(model)
    try:
        bound = signature.bind(*args, **dict(kwargs or {}))
    except TypeError as error:
        raise ModelError(f"The program cannot be called with args={_short(args)}, kwargs={_short(kwargs)}: "
                         f"{error}. Pass the call you would give NumPyro's MCMC.run (without the key).") from None
    bound.apply_defaults()
    values = dict(bound.arguments)
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ModelError(f"The program takes *{name}; amortize needs named arguments to tell each one's role.")
    values = {n: np.asarray(v) if isinstance(v, (list, tuple)) else v for n, v in values.items()}
    as_jax = _as_jax(values)
    trace = _scan_trace(model, as_jax)
    if trace is not None:  # the same argument objects as the trace's observed values
        values = as_jax
    else:
        try:
            trace = _call_trace(model, values)
        except Exception as error:
            raise ModelError(f"The program failed when called with the given arguments: {type(error).__name__}: "
                             f"{error}") from error
    plates, observed = _plates(trace), _observed(trace)
    scanned = {n for n, s in trace.items() if s["type"] == "sample" and _in_scan(s)}
    level = _level_name(trace, scanned, plates, sizes) if scanned else None
    inside = sorted(set(plates) - {n for n, s in trace.items() if s["type"] == "plate"})
    if inside:
        raise ModelError(
            f"Plate{'s' if len(inside) > 1 else ''} {', '.join(f'`{p}`' for p in inside)} "
            f"{'are' if len(inside) > 1 else 'is'} opened inside the scan's step function. amortize reads a scan "
            f"as an ordered level nested in the plates around it: open the plate outside the scan, around the "
            f"`scan(...)` call (its sites keep their dims), with the series time-major (steps first).")
    observed_by, conditioned, starts = {}, set(), {}
    for site, value in observed.items():
        free = [n for n, a in values.items() if a is not None and not _is_size(a) and n not in observed_by.values()]
        # The argument object itself first; equal values (a copy made by the program) only after.
        same = [n for n in free if values[n] is value] or [
            n for n in free if np.shape(values[n]) == np.shape(value)
            and np.array_equal(np.asarray(values[n]), np.asarray(value))]
        if len(same) > 1:  # equal values in several arguments: the one whose change moves the site's value
            same = [n for n in same if _moves(model, values, n, site, value)] or same
        if not same:  # a transform of an argument (a slice, a transpose, a handlers.condition)
            same = [n for n in free if isinstance(values[n], (np.ndarray, jax.Array))
                    and _moves(model, values, n, site, value)]
            if same:
                conditioned.add(site)
                if site in scanned:
                    starts[site] = _start(values[same[0]], value)
        if same:
            observed_by[site] = same[0]
    if data is not None:
        data = [data] if isinstance(data, str) else list(data)
        for site in data:
            if site not in observed_by:
                raise ModelError(
                    f"data names `{site}`, but no argument of the call is observed at a site of that name "
                    f"(sites observed through arguments: {', '.join(observed_by) or 'none'}). Pass its values "
                    f"in the call, as `obs=` of `{site}` receives them.")
        observed_by = {s: observed_by[s] for s in data}
    if not observed_by:
        raise ModelError(
            "No argument of the call is observed at a sample site (`numpyro.sample(name, d, obs=argument)`): "
            "pass the observed data in the call, as you would to MCMC.run.")
    _check_data_only_observed(model, values, observed_by, trace, starts)
    followers = _followers(model, values, plates)
    if level is not None:
        taken = {pair for pairs in followers.values() for pair in pairs}
        followers[level] = _scan_followers(model, values, plates, _steps(trace), taken)
        if not followers[level]:
            raise ModelError(
                f"The program's scan takes {_steps(trace)} steps in this call, but no argument lengthens it: "
                f"lengthening the series (or raising an integer length) by one did not add one step. Pass the "
                f"series whose length sets the scan's (its xs, or the data the scan's length is read from).")
    axes: dict[str, list] = {}
    for plate, pairs in followers.items():
        for name, axis in pairs:
            axes.setdefault(name, []).append((axis, plate))
    designs = dict(covariates or {})
    roles = {}
    for name, value in values.items():
        follows = axes.get(name, [])
        site = next((s for s, a in observed_by.items() if a == name), None)
        if site is not None:
            start = starts.get(site, 0)
            design = designs.pop(f"{site}_start", None) if start else None
            if start and design is None:  # windows of `start` consecutive values of the call's series
                series = np.asarray(value)
                design = Resampled(np.stack([series[i:i + start] for i in range(len(series) - start + 1)]))
            roles[name] = ArgumentRole("data", tuple((a, p) for a, p in follows if a is not None), site, value=value,
                                       start=start, start_design=design, conditioned=site in conditioned)
        elif _is_size(value) and follows:
            roles[name] = ArgumentRole("size", ((0, follows[0][1]),), value=value)
        elif follows or name in designs:
            if level is not None and any(p == level for _, p in follows):
                raise ModelError(
                    f"Argument `{name}` is a covariate series along the program's scan (level `{level}`); amortize "
                    f"reads covariates per instance of a plate, not per step of a scan. Make it observed data "
                    f"(`obs={name}_t` at a sample site in the scan's step) so that amortize simulates it too.")
            if len(follows) != 1 or follows[0][0] != 0 or plates and _nested(trace, follows[0][1]):
                where = ", ".join(f"axis {a} follows plate `{p}`" for a, p in follows) or "it follows no plate"
                raise ModelError(
                    f"Argument `{name}` is neither observed nor a plate size, so it is a covariate, but {where}. "
                    f"amortize draws a covariate per instance of one top-level plate along its first axis "
                    f"(long format: one row per instance). Pass it in that form, or make it observed data "
                    f"(`obs={name}` at a sample site).")
            design = designs.pop(name, None)
            design = Resampled(np.asarray(value)) if design is None else design
            if not isinstance(design, Distribution):
                raise ModelError(f"covariates[{name!r}] is {type(design).__name__}; give a NumPyro distribution "
                                 f"to draw `{name}` from during training, per instance of plate "
                                 f"`{follows[0][1]}`.")
            roles[name] = ArgumentRole("covariate", ((0, follows[0][1]),), name, design=design, value=value)
        else:
            roles[name] = ArgumentRole("fixed", value=value)
    if designs:
        raise ModelError(f"covariates names {', '.join(f'`{n}`' for n in designs)}, which "
                         f"{'is' if len(designs) == 1 else 'are'} not an argument of the program that follows a "
                         f"plate (its arguments: {', '.join(values)}).")
    groups = _index_groups(values, roles, plates)
    if groups and level is not None:
        raise ModelError("The program has a scan and rows grouped by an index; amortize reads one or the other "
                         "from a call. Nest the rows in their groups' plate (n_<plate> sizes).")
    for rows, (group, index) in groups.items():
        roles[index] = dataclasses.replace(roles[index], kind="index", site=None, design=None)
    sized = [p for p in plates if p in followers or any(g == p for g, _ in groups.values())]
    sized += [level] if level is not None else []
    adapted = AdaptedProgram(model, roles, sized, groups)
    _check_names(adapted, trace)
    return adapted


def _moves(model, values, name: str, site: str, value) -> bool:
    """True when changing argument ``name`` changes what site ``site`` observes."""
    try:
        moved = _observed(_call_trace(model, {**values, name: _shifted(values[name])})).get(site)
    except Exception:  # the program cannot take the changed values: not its data
        return False
    return moved is not None and not (np.shape(moved) == np.shape(value) and np.array_equal(moved, value))


def _level_name(trace, scanned, plates, sizes) -> str:
    """The name of the ordered level a scan forms: the one key of ``sizes`` that is not a plate."""
    names = ", ".join(f"`{n}`" for n in sorted(scanned))
    free = [p for p in (sizes or {}) if p not in plates]
    if len(free) != 1:
        raise ModelError(
            f"Sites {names} run inside a numpyro.contrib.control_flow.scan of {_steps(trace)} steps in this call: "
            f"an ordered (time) level. Name it in sizes= with its training range of steps, besides the plates "
            f"({', '.join(f'`{p}`' for p in plates) or 'none'}): e.g. sizes={{'time': (10, 100)}}"
            + (f"; sizes= names {', '.join(f'`{p}`' for p in free)}, which are not plates of the call." if free
               else "."))
    return free[0]


def _index_groups(values, roles, plates) -> dict[str, tuple[str, str]]:
    """Rows that pick their group's parameters through an integer index (``a[county_idx]``, the long
    format of NumPyro's radon and lung-function tutorials): ``{rows plate: (group plate, index argument)}``.

    An index is an integer covariate of a rows plate whose values number the instances of another plate:
    its largest value + 1, or its count of distinct values, is that plate's size in the call.
    """
    groups = {}
    for name, role in roles.items():
        value = values[name]
        if role.kind != "covariate" or np.ndim(value) != 1 or not np.issubdtype(np.asarray(value).dtype, np.integer):
            continue
        rows = role.plates[0][1]
        counts = {len(np.unique(value)), int(np.max(value)) + 1}
        matches = [p for p, size in plates.items() if p != rows and size in counts]
        if len(matches) > 1:
            raise ModelError(
                f"Argument `{name}` looks like a group index for plate `{rows}`, but plates "
                f"{', '.join(f'`{p}`' for p in matches)} all have its number of groups; rename or resize them "
                f"so that one plate has {max(counts)} instances.")
        if matches:
            if rows in groups:
                raise ModelError(
                    f"Arguments `{groups[rows][1]}` and `{name}` both group the rows of plate `{rows}`; amortize "
                    f"reads one grouping per rows plate (nested groups: nest the plates, `n_<plate>` sizes).")
            if np.min(value) < 0 or len(np.unique(value)) != int(np.max(value)) + 1:
                raise ModelError(
                    f"Argument `{name}` groups the rows of plate `{rows}` into plate `{matches[0]}`, but its values "
                    f"are not 0 .. {int(np.max(value))} with every group present; recode it (np.unique(..., "
                    f"return_inverse=True)) so that every group has a row.")
            groups[rows] = (matches[0], name)
    return groups


def _nested(trace, plate) -> bool:
    """True when ``plate`` is opened inside another plate somewhere in the program's ``trace``."""
    return any(s["type"] == "plate" and n == plate and s["cond_indep_stack"] for n, s in trace.items())


def _check_names(adapted: AdaptedProgram, trace) -> None:
    sites = {n for n, s in trace.items() if s["type"] in ("sample", "deterministic")}
    for name, role in adapted.roles.items():
        if role.kind == "covariate" and role.site in sites:
            raise ModelError(
                f"Covariate argument `{role.site}` has the name of a site of the program; amortize records "
                f"covariates as data sites of their argument's name. Rename the argument or the site.")
        if role.start_site in sites:
            raise ModelError(
                f"The start values of series `{role.site}` (argument `{name}`) become the covariate site "
                f"`{role.start_site}`, but the program has a site of that name. Rename that site.")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
