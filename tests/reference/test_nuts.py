"""The NUTS reference runs the very same program and flags runs that did not converge."""

import warnings

import numpy as np
import pytest

from amortize.models import conjugate_normal as cn
from amortize.models import eight_schools
from amortize.reference import ReferenceWarning, nuts

GROUPS = [np.array([0.4, 1.1]), np.array([-0.5, 0.1, 0.3, -0.2, 0.6]), np.array([1.8])]


def test_nuts_recovers_the_closed_form_on_ragged_groups():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReferenceWarning)
        tree = nuts(cn.model, {"y": GROUPS}, num_warmup=500, num_samples=1500, num_chains=2, seed=0)
    exact = cn.exact_posterior(GROUPS)
    posterior = tree["posterior"]
    assert posterior["theta"].dims == ("chain", "draw", "group")
    assert tree["observed_data"]["y"].dims == ("obs",)
    assert posterior.attrs["converged"] == 1
    assert tree["sample_stats"]["diverging"].shape == (2, 1500)
    # Monte Carlo error with an effective sample size of at least ~1000: 0.1 sd is > 3 se.
    assert abs(posterior["mu"].mean() - exact["mu_mean"]) < 0.1 * exact["mu_sd"]
    np.testing.assert_allclose(posterior["theta"].mean(("chain", "draw")), exact["theta_mean"],
                               atol=0.1 * exact["theta_sd"].min())
    np.testing.assert_allclose(posterior["theta"].std(("chain", "draw")), exact["theta_sd"], rtol=0.1)


def test_a_run_that_did_not_converge_is_flagged():
    with pytest.warns(ReferenceWarning, match="did not converge"):
        tree = nuts(eight_schools.model, eight_schools.data(), num_warmup=10, num_samples=100,
                    num_chains=2, seed=1)
    attrs = tree["posterior"].attrs
    assert attrs["converged"] == 0
    assert attrs["max_rhat"] > 1.01 or attrs["divergences"] > 0


def test_noncentered_reparametrization_keeps_the_programs_posterior():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReferenceWarning)
        tree = nuts(cn.model, {"y": GROUPS}, num_warmup=500, num_samples=1500, num_chains=2, seed=0,
                    reparam="noncentered")
    posterior = tree["posterior"]
    # NUTS moved theta_decentered; the tree holds the program's own sites only.
    assert set(posterior.data_vars) == {"mu", "theta"}
    assert posterior.attrs["reparam"] == "noncentered"
    exact = cn.exact_posterior(GROUPS)
    np.testing.assert_allclose(posterior["theta"].mean(("chain", "draw")), exact["theta_mean"],
                               atol=0.1 * exact["theta_sd"].min())
    np.testing.assert_allclose(posterior["theta"].std(("chain", "draw")), exact["theta_sd"], rtol=0.1)
    with pytest.raises(ValueError, match="reparam='non-centred'.*use 'noncentered'"):
        nuts(cn.model, {"y": GROUPS}, reparam="non-centred")


@pytest.mark.slow  # two NUTS runs; quality of the reference, not its correctness (the test above)
def test_noncentered_eight_schools_leaves_the_funnel():
    # The centered program's funnel (tau → 0) makes NUTS diverge; decentered theta does not.
    settings = dict(num_warmup=500, num_samples=500, num_chains=2, seed=2, target_accept_prob=0.9)
    with pytest.warns(ReferenceWarning):
        centered = nuts(eight_schools.model, eight_schools.data(), **settings)
    assert centered["posterior"].attrs["divergences"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReferenceWarning)
        tree = nuts(eight_schools.model, eight_schools.data(), reparam="noncentered", **settings)
    assert tree["posterior"].attrs["divergences"] == 0
    assert tree["posterior"]["theta"].dims == ("chain", "draw", "school")
