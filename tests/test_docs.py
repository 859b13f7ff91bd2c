"""Code blocks of the docs run as written: each page's ``python`` blocks, in order, in one namespace.

docs/from_mcmc.md runs in tests/test_docs_from_mcmc.py: a file of its own, so that the two test workers
can run the two longest pages side by side.
"""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: Pages whose examples run in seconds as written (their own training is short).
PAGES = ["design.md"]


def blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)


def run_page(page: str) -> None:
    namespace = {}
    found = blocks(page)
    assert found, f"docs/{page} has no python block"
    for i, code in enumerate(found):
        exec(compile(code, f"docs/{page} block {i + 1}", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_page(page)
