# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create the virtual environment .venv with Python 3.12 (see .python-version) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow benchmark clean

$(BIN)/amortize: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(BIN)/amortize
	$(BIN)/amortize demo --out amortize-demo

# Two workers, one test file each at a time (files share their trained fixtures): about half the wall time.
test: $(BIN)/amortize
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-slow: $(BIN)/amortize
	$(BIN)/python -m pytest -q -m slow

benchmark: $(BIN)/amortize
	$(BIN)/python benchmarks/core.py

clean:
	rm -rf $(VENV) amortize-demo .pytest_cache
