"""Code blocks of the docs run as written: each page's ``python`` blocks, in order, in one namespace.

Pages whose examples train run with every ``fit`` shortened to a few steps, every NUTS warm-up to a
few iterations and, where an example leaves the networks at their defaults, small networks (the same
calls, arguments and all, otherwise): they check that each example runs against the current API, not
the quality of its answer, which the tests of each feature check. Compiling the default networks'
training step and samplers was most of these tests' time. The longest pages run from files
of their own (tests/test_docs_from_mcmc.py, tests/test_docs_validation.py), so that the two test
workers can run them side by side.
"""

import re
from pathlib import Path

import pytest

import amortize as am
from amortize.refine import nuts as nuts_runner
from numpyro.infer import MCMC

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: Pages run with every fit shortened (:func:`short_fits`); validation.md, refinement.md and
#: from_mcmc.md run from files of their own.
SHORTENED = ["design.md", "guide.md", "comparison.md", "mixtures.md"]

#: Training steps of a shortened fit, and NUTS warm-up iterations.
SHORT_STEPS, SHORT_WARMUP = 20, 50

#: The networks of an example that sets none: two affine coupling layers, narrow (an example that sets
#: ``network=`` keeps its own). Compiling them takes about half as long as the defaults.
SMALL_NETWORK = am.NetworkConfig(flow="affine", flow_layers=2, flow_hidden=32, summary_width=32)


def blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)


def run_page(page: str) -> dict:
    namespace = {}
    found = blocks(page)
    assert found, f"docs/{page} has no python block"
    for i, code in enumerate(found):
        exec(compile(code, f"docs/{page} block {i + 1}", "exec"), namespace)
    return namespace


def short_fits(monkeypatch) -> list:
    """Make every ``Amortizer.fit`` and ``ModelComparison.fit`` train ``SHORT_STEPS`` steps of 16 (the
    call's other settings kept), every NUTS run warm up for at most ``SHORT_WARMUP`` iterations, and
    every ``am.compile`` or ``am.compare`` that sets no ``network`` use :data:`SMALL_NETWORK`.

    Returns the list the shortened calls append their keyword arguments to (so a test can check that
    the page's calls went through).
    """
    calls = []
    for cls in (am.Amortizer, am.ModelComparison):
        def short(self, *args, _fit=cls.fit, **kwargs):
            assert not args, "docs examples pass fit's settings by keyword"
            calls.append(kwargs)
            kept = {k: v for k, v in kwargs.items() if k not in ("steps", "batch_size", "time_limit", "progress")}
            return _fit(self, steps=SHORT_STEPS, batch_size=16, progress=False, **kept)
        monkeypatch.setattr(cls, "fit", short)

    def short_mcmc(kernel, *, num_warmup, **kwargs):
        return MCMC(kernel, num_warmup=min(num_warmup, SHORT_WARMUP), **kwargs)
    monkeypatch.setattr(nuts_runner, "MCMC", short_mcmc)
    for name in ("compile", "compare"):
        def small(*args, _build=getattr(am, name), **kwargs):
            kwargs.setdefault("network", SMALL_NETWORK)
            return _build(*args, **kwargs)
        monkeypatch.setattr(am, name, small)
    return calls


def run_shortened(page: str, tmp_path, monkeypatch) -> dict:
    """Run ``page`` in ``tmp_path`` with every fit shortened; check that its fits went through."""
    monkeypatch.chdir(tmp_path)
    calls = short_fits(monkeypatch)
    namespace = run_page(page)
    assert len(calls) == "".join(blocks(page)).count(".fit(")
    return namespace


@pytest.mark.parametrize("page", SHORTENED)
def test_page_examples_run_with_short_training(page, tmp_path, monkeypatch):
    run_shortened(page, tmp_path, monkeypatch)
