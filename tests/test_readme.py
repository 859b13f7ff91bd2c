"""The README's example runs as written (with a short training instead of five minutes)."""

import re
from pathlib import Path

import amortize as am

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch):
    code = _block("## What you write")
    fit = am.Amortizer.fit

    def short_fit(self, *args, **kwargs):  # the same call, 30 steps instead of 5 minutes
        return fit(self, steps=30, batch_size=16, seed=kwargs.get("seed", 0), progress=False)

    monkeypatch.setattr(am.Amortizer, "fit", short_fit)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["idata"]["posterior"]["theta"].shape[-1] == 8
    assert namespace["exact"]["posterior"].attrs["refine"] == "psis"
    assert (tmp_path / "hier.amortizer").exists()
