"""The closed-form marginal likelihoods of the pooled and hierarchical models."""

import numpy as np
from scipy import stats

from amortize.models import hierarchical_comparison as hc


def _brute_force(y, mask):
    """log N(y_observed; 0, SIGMA² I + group_var · same-group + 1 1ᵀ) for both models."""
    values = y[mask]
    group = np.nonzero(mask)[0]
    same_group = (group[:, None] == group[None, :]).astype(float)
    out = []
    for group_var in (0.0, hc.TAU**2):
        cov = hc.SIGMA**2 * np.eye(len(values)) + group_var * same_group + 1.0
        out.append(stats.multivariate_normal(np.zeros(len(values)), cov).logpdf(values))
    return np.array(out)


def test_marginal_likelihood_ratio_matches_the_full_gaussian():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = np.zeros((6, 5), bool)
        for j, n in enumerate(rng.integers(0, 6, size=6)):  # ragged, empty groups included
            mask[j, :n] = True
        mask[0, 0] = True
        y = rng.normal(0.5, 1.3, size=(6, 5))
        fast = hc.exact_log_marginal_likelihoods(y[None], mask[None])[0]
        exact = _brute_force(y, mask)
        # The residual term c is common to both models: only the difference is exact.
        np.testing.assert_allclose(fast[1] - fast[0], exact[1] - exact[0], rtol=1e-9, atol=1e-9)
    probabilities = hc.exact_model_probabilities(y[None], mask[None], prior=(0.25, 0.75))[0]
    odds = np.exp(exact[1] - exact[0]) * 3
    np.testing.assert_allclose(probabilities, [1 / (1 + odds), odds / (1 + odds)], rtol=1e-9)
