"""SBC, recovery and contraction."""

import numpy as np
import pytest

from amortize.diagnostics import calibrate, ecdf_band


def test_ecdf_band_accepts_uniform_and_rejects_miscalibrated_pit():
    rng = np.random.default_rng(0)
    assert ecdf_band(rng.uniform(size=200))["inside"]
    # Overdispersed posteriors put the truth in the middle: PIT ~ Beta(2, 2).
    assert not ecdf_band(rng.beta(2, 2, size=200))["inside"]
    # Biased posteriors: PIT skewed to one side.
    assert not ecdf_band(rng.beta(1.5, 1, size=200))["inside"]


def test_ecdf_band_rejects_too_few_values():
    with pytest.raises(ValueError, match="at least two"):
        ecdf_band(np.array([0.5]))


def test_a_trained_amortizer_is_calibrated_and_recovers(trained_conjugate, tmp_path):
    calibration = calibrate(trained_conjugate, num_datasets=200, num_samples=100, seed=0)
    table = calibration.sbc_table()
    assert set(table.index) == {"mu", "theta"}
    assert table.loc["mu", "tested"] == 200 and table.loc["theta", "tested"] == 200
    assert table.loc["theta", "units"] > 400  # every real group of every data set
    assert calibration.passed, table
    recovery = calibration.recovery_table()
    # Coverage of 90% intervals over 200 data sets: binomial sd 0.021, so ± 3 sd.
    assert recovery["coverage_90"].between(0.84, 0.96).all(), recovery
    # z-scores of a calibrated posterior have sd 1 (sd of a sample sd of 200: 0.05).
    assert recovery["z_sd"].between(0.85, 1.15).all(), recovery
    # The data inform both levels: posterior variance well below the prior's.
    assert (recovery["contraction"] > 0.3).all(), recovery
    dataset = calibration.to_dataset()
    np.testing.assert_array_equal(dataset["mu_rank"].values, calibration.parameters["mu"]["rank"])
    assert dataset["mu_rank"].max() <= 100
    # ArviZ's layout: a prior_sbc group of PIT values over (chain, draw), one draw per data set,
    # which arviz_plots.plot_ecdf_pit reads; the tree survives a netCDF round trip.
    tree = calibration.to_datatree()
    assert tree["prior_sbc"]["theta"].dims == ("chain", "draw") and tree["prior_sbc"]["theta"].shape == (1, 200)
    np.testing.assert_allclose(np.sort(tree["prior_sbc"]["mu"].values[0]),
                               np.sort(calibration.sbc_test("mu")["pit"]))
    import arviz_plots as azp
    import matplotlib

    matplotlib.use("Agg")
    azp.plot_ecdf_pit(tree, var_names=["mu"])
    path = tmp_path / "sbc.nc"
    tree.to_netcdf(path)
    import xarray as xr

    np.testing.assert_array_equal(xr.open_datatree(path)["calibration"]["theta_rank"].values,
                                  calibration.parameters["theta"]["rank"])
