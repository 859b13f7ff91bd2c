"""Conditional flows: proper densities, invertible, conditioned on the context."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from amortize.networks import ConditionalFlow
from amortize.networks.flows import coupling_mask


def perturbed_flow(kind, dim, seed=0, depth=1):
    flow = ConditionalFlow(dim, (4, 2), layers=4, hidden=16, depth=depth, kind=kind, bins=6,
                           bound=4.0, activation="silu", rngs=nnx.Rngs(seed))
    state = nnx.state(flow, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    nnx.update(flow, jax.tree.unflatten(treedef, leaves))
    return flow


def context(flow, n, seed=2):
    parts = [jax.random.normal(jax.random.key(seed), (4,)), jax.random.normal(jax.random.key(seed + 1), (2,))]
    projected = flow.project_context(parts)
    return jnp.broadcast_to(projected, (n,) + projected.shape)


@pytest.mark.parametrize("kind,depth", [("spline", 1), ("affine", 1), ("affine", 0)])
def test_one_dimensional_density_integrates_to_one(kind, depth):
    flow = perturbed_flow(kind, 1, depth=depth)
    samples = flow.sample(jax.random.key(0), context(flow, 5000))
    low, high = float(samples.min()) - 3, float(samples.max()) + 3
    grid = jnp.linspace(low, high, 100_001)[:, None]
    density = jnp.exp(flow.log_prob(grid, context(flow, grid.shape[0])))
    # The spacing from the endpoints, not from two float32 grid points, whose
    # difference loses digits when the grid sits far from zero.
    integral = float(jnp.sum(density)) * (high - low) / (grid.shape[0] - 1)
    assert abs(integral - 1.0) < 2e-3


@pytest.mark.parametrize("kind", ["spline", "affine"])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_samples_follow_the_density(kind, dim):
    # For x ~ q, the pushed-back base variables are standard normal: checks that
    # sample and log_prob use the same (inverse) transformation.
    flow = perturbed_flow(kind, dim)
    projected = context(flow, 4000)
    x = flow.sample(jax.random.key(1), projected)
    z = x
    for bijector in reversed(flow._bijectors(projected)):
        z = bijector.inverse(z)
    z = np.asarray(z)
    assert np.abs(z.mean(0)).max() < 0.1
    assert np.abs(z.std(0) - 1).max() < 0.06
    assert np.isfinite(np.asarray(flow.log_prob(x, projected))).all()


def test_flow_depends_on_the_context():
    flow = perturbed_flow("spline", 2)
    x = jnp.zeros((1, 2))
    a = flow.log_prob(x, context(flow, 1, seed=2))
    b = flow.log_prob(x, context(flow, 1, seed=7))
    assert abs(float(a[0] - b[0])) > 1e-3


def test_coupling_masks_cover_every_dim():
    for dim in (2, 3, 6):
        masks = np.stack([coupling_mask(dim, layer) for layer in range(4)])
        assert (~masks).any(axis=0).all()  # every dim is transformed in some layer
        assert masks.any(axis=0).all()  # and conditions another in some layer


def test_spline_matches_distrax_forward_inverse_and_log_det():
    import distrax

    from amortize.networks.flows import RationalQuadraticSpline

    params = 0.8 * jax.random.normal(jax.random.key(0), (4000, 25))
    x = 3.0 * jax.random.normal(jax.random.key(1), (4000,))  # inside and outside [-5, 5]
    ours = RationalQuadraticSpline(params, 5.0)
    reference = distrax.RationalQuadraticSpline(params, range_min=-5.0, range_max=5.0)
    y, log_det = ours.forward_and_log_det(x)
    y_ref, log_det_ref = reference.forward_and_log_det(x)
    np.testing.assert_allclose(y, y_ref, atol=1e-4)
    np.testing.assert_allclose(log_det, log_det_ref, atol=1e-4)
    x_back, inverse_log_det = ours.inverse_and_log_det(y)
    np.testing.assert_allclose(x_back, x, atol=1e-3)
    # float32 rounding where the spline is steep (slopes up to e^7): relative 1e-4.
    np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-4, atol=1e-4)
    _, inverse_ref = reference.inverse_and_log_det(y_ref)
    np.testing.assert_allclose(inverse_log_det, inverse_ref, rtol=1e-4, atol=1e-4)


def test_spline_gradients_are_finite_inside_and_outside_the_bound():
    from amortize.networks.flows import RationalQuadraticSpline

    params = 2.0 * jax.random.normal(jax.random.key(3), (512, 25))
    y = jnp.concatenate([jnp.linspace(-9.0, 9.0, 500), jnp.array([-5.0, 5.0, 0.0, -4.9999, 4.9999, 1e-7] * 2)])

    def total(params):
        x, log_det = RationalQuadraticSpline(params, 5.0).inverse_and_log_det(y)
        return jnp.sum(x) + jnp.sum(log_det)

    assert np.isfinite(np.asarray(jax.grad(total)(params))).all()


def _parabola_fit(flow):
    """A 1-D flow's log density on a grid, the least-squares parabola through it, and its coefficients."""
    grid = jnp.linspace(-3.0, 3.0, 13)[:, None]
    log_q = np.asarray(flow.log_prob(grid, context(flow, grid.shape[0])), np.float64)
    coefficients = np.polyfit(np.asarray(grid[:, 0]), log_q, 2)
    return log_q, np.polyval(coefficients, np.asarray(grid[:, 0])), coefficients


def test_one_dimensional_affine_flow_is_a_conditional_gaussian():
    # Its coupling layers would compose into one affine map: none are built,
    # and the log density is exactly quadratic in x with a negative curvature.
    flow = perturbed_flow("affine", 1)
    assert flow.n_layers == 0
    log_q, parabola, coefficients = _parabola_fit(flow)
    np.testing.assert_allclose(parabola, log_q, atol=1e-4)
    assert coefficients[0] < 0


def test_one_dimensional_spline_flow_has_one_layer_and_bends():
    # A scalar factor needs no coupling stack: one context-conditioned spline, then the affine layer.
    flow = perturbed_flow("spline", 1)
    assert flow.n_layers == 1
    log_q, parabola, _ = _parabola_fit(flow)
    # Not a Gaussian: the spline bends the log density away from a parabola.
    assert np.max(np.abs(parabola - log_q)) > 1e-3
