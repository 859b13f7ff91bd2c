"""docs/from_mcmc.md's code blocks run as written, with short training (see tests/test_docs.py)."""

from tests.test_docs import run_shortened


def test_from_mcmc_examples_run(tmp_path, monkeypatch):
    run_shortened("from_mcmc.md", tmp_path, monkeypatch)
