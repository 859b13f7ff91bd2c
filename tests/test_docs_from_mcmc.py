"""docs/from_mcmc.md's code blocks run as written (see tests/test_docs.py)."""

from tests.test_docs import run_page


def test_from_mcmc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_page("from_mcmc.md")
