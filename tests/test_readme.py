"""The README's examples run as written, in order, in one namespace (every fit shortened to a few steps)."""

import re
from pathlib import Path

from tests.test_docs import short_fits

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    calls = short_fits(monkeypatch)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md block {i + 1}", "exec"), namespace)
    assert [c.get("time_limit") for c in calls] == [300, 120]  # the README's own calls went through
    assert namespace["idata"]["posterior"]["theta"].shape[-1] == 8
    assert namespace["exact"]["posterior"].attrs["refine"] == "psis"
    assert (tmp_path / "hier.amortizer").exists()
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "comparison").is_dir()
    assert set(namespace["cmp"].predict(namespace["data"])) == {"pooled", "hierarchical"}
