"""Which inputs an output of a JAX function depends on, read from its jaxpr's data flow.

NumPyro's provenance tracking sees a ``scan`` as one operation, so every site
inside a scan looks as if it depended on every latent that enters the carry.
Reading the scan's body instead, and iterating the carry to a fixed point,
tells each output's real inputs. The answer is structural: it does not
depend on values, so ``where``, ``clip`` or a ReLU that happens to have zero
gradient at one point cannot hide a dependence (a gradient test at a prior
draw could). It is conservative at the level of whole arrays: an output
depends on an input when any element of one can reach any element of the
other.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
from jax.extend import core as jax_core

__all__ = ["output_dependencies"]

_NONE: frozenset = frozenset()


def output_dependencies(fn: Callable, *args) -> list[frozenset[int]]:
    """For every output leaf of ``fn(*args)``, the indices of the input leaves it depends on.

    Parameters
    ----------
    fn : callable
        A JAX-traceable function.
    *args : pytrees of arrays
        Inputs; their leaves are numbered in ``jax.tree.leaves(args)`` order.

    Returns
    -------
    list of frozenset of int
        One set per output leaf, in ``jax.tree.leaves(fn(*args))`` order.
    """
    closed = jax.make_jaxpr(fn)(*args)
    return _jaxpr_dependencies(closed.jaxpr, [frozenset([i]) for i in range(len(closed.jaxpr.invars))])


def _read(env, atom) -> frozenset:
    if isinstance(atom, jax_core.Literal):
        return _NONE
    return env.get(atom, _NONE)


def _jaxpr_dependencies(jaxpr, inputs: Sequence[frozenset]) -> list[frozenset]:
    env = dict(zip(jaxpr.invars, inputs))
    for eqn in jaxpr.eqns:
        ins = [_read(env, a) for a in eqn.invars]
        for var, deps in zip(eqn.outvars, _equation_dependencies(eqn, ins)):
            env[var] = deps
    return [_read(env, v) for v in jaxpr.outvars]


def _union(sets) -> frozenset:
    out = _NONE
    for s in sets:
        out = out | s
    return out


def _inner(closed_or_open):
    return getattr(closed_or_open, "jaxpr", closed_or_open)


def _fixed_point(body, consts: list, carry: list, xs: list, num_carry: int):
    """Iterate a loop body's dependencies until the carry's stop growing; returns (carry, body outputs)."""
    while True:
        out = _jaxpr_dependencies(body, consts + carry + xs)
        grown = [c | o for c, o in zip(carry, out[:num_carry])]
        if grown == carry:
            return carry, out
        carry = grown


def _equation_dependencies(eqn, ins: list[frozenset]) -> list[frozenset]:
    name = eqn.primitive.name
    params = eqn.params
    if name == "scan":
        body = _inner(params["jaxpr"])
        if "num_consts" in params:
            n_consts, n_carry = params["num_consts"], params["num_carry"]
            consts, carry, xs = ins[:n_consts], ins[n_consts:n_consts + n_carry], ins[n_consts + n_carry:]
        else:  # newer jax: a flat tree of (consts, carry, xs)
            consts, carry, xs = (list(part) for part in params["ft_in"].update(ins).unpack())
        if len(body.invars) == len(ins) and len(body.outvars) == len(eqn.outvars):
            carry, out = _fixed_point(body, consts, carry, xs, len(carry))
            return carry + out[len(carry):]
    if name == "while":
        cond, body = _inner(params["cond_jaxpr"]), _inner(params["body_jaxpr"])
        n_cond, n_body = params["cond_nconsts"], params["body_nconsts"]
        cond_consts, body_consts, carry = ins[:n_cond], ins[n_cond:n_cond + n_body], ins[n_cond + n_body:]
        carry, _ = _fixed_point(body, body_consts, carry, [], len(carry))
        # How many times the body runs depends on the condition: every output does too.
        steering = _union(_jaxpr_dependencies(cond, cond_consts + carry))
        return [c | steering for c in carry]
    if name == "cond":
        index, operands = ins[0], ins[1:]
        branches = [_jaxpr_dependencies(_inner(b), operands) for b in params["branches"]]
        return [index | _union(outs) for outs in zip(*branches)]
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = params.get(key)
        if inner is not None and len(_inner(inner).invars) == len(ins):
            return _jaxpr_dependencies(_inner(inner), ins)
    every = _union(ins)
    return [every] * len(eqn.outvars)
