"""The README's main job runs end to end and writes its results."""

import json

import pytest

from amortize.cli import main


def test_demo_writes_posterior_summary_and_plots(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "40", "--batch-size", "16",
                 "--samples", "400", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "p(mu, tau | y, sigma) · Π_school p(theta | mu, tau, y[school], sigma[school])" in printed
    assert "theta[H]" in printed  # the ArviZ summary, with school labels
    for name in ("posterior.nc", "summary.csv", "summary.json", "eight_schools.amortizer",
                 "training_history.png", "posterior_intervals.png", "posterior_marginals.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_samples"] == 400 and "mu" in summary["summary"]
    import arviz as az

    tree = az.from_netcdf(out / "posterior.nc")
    assert tree["posterior"]["theta"].dims == ("chain", "draw", "school")


def test_cli_requires_a_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code != 0  # a usage error, not success
    assert "demo" in capsys.readouterr().err  # the usage names the commands
