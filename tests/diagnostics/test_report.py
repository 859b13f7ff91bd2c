"""One call writes the validation report folder."""

import json

import numpy as np

from amortize.reference import nuts
from tests.conftest import two_level

GROUPS = [np.array([0.1, 0.5, -0.2]), np.array([1.0, 1.4]), np.array([-0.3, 0.2, 0.4, 0.0]), np.array([0.7])]


def test_validate_writes_figures_their_numbers_and_a_summary(quick_two_level, tmp_path):
    reference = nuts(two_level, {"y": GROUPS}, num_warmup=300, num_samples=300, num_chains=2, seed=0)
    report = quick_two_level.validate(tmp_path / "report", data={"y": GROUPS}, reference=reference,
                                      logo=True, num_datasets=60, sbc_draws=30, num_samples=400,
                                      logo_samples=400)
    for name in ("sbc", "recovery", "ppc", "pooling", "comparison", "logo"):
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 5000
        json.loads((tmp_path / "report" / f"{name}.json").read_text())
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    # The JSON holds the same numbers as the returned objects.
    table = report.calibration.sbc_table()
    for name in ("mu", "tau", "sigma", "theta"):
        assert summary["sbc"][name]["passed"] == bool(table.loc[name, "passed"])
    sbc_figure = json.loads((tmp_path / "report" / "sbc.json").read_text())
    assert set(sbc_figure) == {"mu", "tau", "sigma", "theta"}
    assert summary["logo"]["elpd"] == report.logo.elpd
    assert summary["comparison"]["reference"]["reference_converged"] == bool(reference["posterior"].attrs["converged"])
    pooling = json.loads((tmp_path / "report" / "pooling.json").read_text())
    assert len(pooling["theta"]["reference"]) == len(GROUPS)
    assert report.posterior["posterior_predictive"]["y"].sizes["obs"] == sum(len(g) for g in GROUPS)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "Simulation-based calibration" in markdown and "Leave-one-group-out" in markdown
