"""Structural dependencies read from a jaxpr, through scan (carry to a fixed point), while and cond."""

import jax
import jax.numpy as jnp

from amortize.graph.dependence import output_dependencies


def test_each_output_depends_on_exactly_the_inputs_that_reach_it():
    def fn(a, b, c, d):
        def step(carry, x):
            s, t = carry
            # s accumulates a; t only ever sees the scanned xs; the output mixes s (through a ReLU)
            # and b (through a where on t).
            return (s + a, t * 2 + x), jnp.maximum(s, 0) + jnp.where(t > 0, b, 0.0)

        (s, t), ys = jax.lax.scan(step, (0.0, 0.0), jnp.arange(3.0))
        counter, passed = jax.lax.while_loop(lambda v: v[0] < d, lambda v: (v[0] + 1.0, v[1] * 1.0), (0.0, c))
        picked = jax.lax.cond(a > 0, lambda u: u * 2, lambda u: u + b, a)
        return {"clip": jnp.clip(c, 0, 1), "counter": counter, "passed": passed, "picked": picked,
                "s": s, "t": t, "ys": ys}

    deps = output_dependencies(fn, 1.0, 2.0, 3.0, 4.0)   # dict leaves in sorted-key order
    clip, counter, passed, picked, s, t, ys = deps
    assert clip == {2} and s == {0} and t == set()
    assert ys == {0, 1}                   # through the carry s (a) and the where (b), not c or d
    assert counter == {3}                 # the loop bound
    assert passed == {2, 3}               # c, and d through the number of iterations
    assert picked == {0, 1}               # the branch index (a) and both branches' operands (a, b)


def test_a_carry_that_picks_up_an_input_late_is_followed_to_a_fixed_point():
    def fn(a, b):
        def step(carry, _):
            first, second, third = carry
            return (b, first, second), third   # b reaches the output only after three steps
        _, ys = jax.lax.scan(step, (0.0, 0.0, a), None, length=5)
        return ys

    assert output_dependencies(fn, 1.0, 2.0) == [{0, 1}]
