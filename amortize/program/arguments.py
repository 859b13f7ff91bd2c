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

:func:`adapt` returns an :class:`~amortize.program.adapted.AdaptedProgram`
(:mod:`amortize.program.adapted`): the program in amortize's calling
convention — keyword ``n_<plate>`` sizes, data and covariates by site name,
``None`` to simulate — wrapping the unchanged function. Covariates become
data sites of their own (their distribution is the design: constant in the
latents, so it changes no posterior). This module holds one concept, reading
the roles from a call, and its probes (lengthened and perturbed calls).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import Distribution

from amortize.errors import ModelError
# AdaptedProgram, ArgumentRole and Resampled are also importable from here: archives saved before they
# moved to amortize.program.adapted name this module in their pickles.
from amortize.program.adapted import (AdaptedProgram, ArgumentRole, Resampled, as_jax, bind_call, call_trace,
                                      observed_values, program_signature)

__all__ = ["AdaptedProgram", "ArgumentRole", "Resampled", "adapt", "program_signature"]


def _plates(trace) -> dict[str, int]:
    """Plate sizes, also of plates opened inside a ``scan`` body (known from its sites' frames only)."""
    inner = {f.name: int(f.size) for s in trace.values() if s["type"] == "sample"
             for f in s.get("cond_indep_stack") or ()}
    return {**inner, **{n: int(s["args"][0]) for n, s in trace.items() if s["type"] == "plate"}}


def _steps(trace) -> int | None:
    """The number of steps of the program's ``scan`` (None without one)."""
    return next((int(np.shape(s["value"])[0]) for s in trace.values() if s["type"] == "sample" and _in_scan(s)),
                None)


def _check_data_onlyobserved_values(model, values, observed_by: Mapping[str, str], reference,
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
        bound = bind_call(model, call_values)
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
        trace = call_trace(model, values)
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
            trace = call_trace(model, _perturbed(values, candidates))
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
    jax_values = as_jax(values)
    trace = _scan_trace(model, jax_values)
    if trace is not None:  # the same argument objects as the trace's observed values
        values = jax_values
    else:
        try:
            trace = call_trace(model, values)
        except Exception as error:
            raise ModelError(f"The program failed when called with the given arguments: {type(error).__name__}: "
                             f"{error}") from error
    plates, observed = _plates(trace), observed_values(trace)
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
    _check_data_onlyobserved_values(model, values, observed_by, trace, starts)
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
        moved = observed_values(call_trace(model, {**values, name: _shifted(values[name])})).get(site)
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
