"""docs/validation.md's and docs/refinement.md's code blocks run as written, with short training (see
tests/test_docs.py)."""

import pytest

from tests.test_docs import run_shortened


@pytest.mark.parametrize("page", ["validation.md", "refinement.md"])
def test_validation_and_refinement_examples_run(page, tmp_path, monkeypatch):
    run_shortened(page, tmp_path, monkeypatch)
