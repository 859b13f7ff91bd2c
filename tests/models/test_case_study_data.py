"""Loaders of the case-study data (skipped where ../shared/data is absent)."""

import warnings

import numpy as np
import pytest

import amortize as am
from amortize.prepare import prepare_data
from amortize.models import eight_schools, radon, sleepstudy
from tests.conftest import SHARED_DATA


def needs(name):
    return pytest.mark.skipif(not (SHARED_DATA / name).is_dir(),
                              reason=f"shared data folder ../shared/data/{name} is not present")


@needs("eight_schools")
def test_posteriordb_reference_has_the_published_means():
    tree = eight_schools.reference_posterior(SHARED_DATA / "eight_schools")
    posterior = tree["posterior"]
    assert dict(posterior.sizes) == {"chain": 10, "draw": 1000, "school": 8}
    # posteriordb's published mean_value for eight_schools_noncentered.
    assert float(posterior["mu"].mean()) == pytest.approx(4.41052, abs=1e-4)
    assert float(posterior["tau"].mean()) == pytest.approx(3.60206, abs=1e-4)
    assert float(posterior["theta"].sel(school="A").mean()) == pytest.approx(6.1505, abs=1e-3)
    np.testing.assert_array_equal(tree["observed_data"]["y"].values, eight_schools.Y)


@needs("sleepstudy")
def test_sleepstudy_loads_as_18_subjects_by_10_days():
    data, coords = sleepstudy.load(SHARED_DATA / "sleepstudy")
    assert data["reaction"].shape == (18, 10) and data["days"].shape == (18, 10)
    assert data["reaction"][0, 0] == pytest.approx(249.56)
    np.testing.assert_array_equal(data["days"][3], np.arange(10))
    assert coords["subject"][0] == 308
    amortizer = am.compile(sleepstudy.model, data=["days", "reaction"], sizes=sleepstudy.SIZES)
    prepared = prepare_data(amortizer.graph, data, coords=coords)
    assert prepared.masks["day"].sum() == 180


@needs("radon")
def test_radon_loads_919_houses_in_85_ragged_counties():
    data, index = radon.load(SHARED_DATA / "radon")
    assert len(data["log_radon"]) == 919 and data["floor"].sum() == 153
    amortizer = am.compile(radon.intercepts, data=["floor", "log_radon"], sizes=radon.SIZES)
    with warnings.catch_warnings():
        warnings.simplefilter("error", am.AmortizationGapWarning)  # 1–116 houses: inside the trained range
        prepared = prepare_data(amortizer.graph, data, index=index)
    counts = prepared.masks["house"][0].sum(1)[prepared.masks["county"][0]]
    assert len(counts) == 85 and counts.min() == 1 and counts.max() == 116
    assert "AITKIN" in set(prepared.labels["county"])
