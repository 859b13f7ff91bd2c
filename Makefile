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
# Files go out in the order tests/conftest.py gives (the longest first); without --no-loadscope-reorder
# pytest-xdist would reorder them by their number of tests, which put the long single-test files last.
# Both share one JAX compilation cache for the run (tests that train the same program and networks compile
# their steps once); it starts empty and is removed afterwards.
test: $(BIN)/amortize
	cache=$$(mktemp -d) && JAX_COMPILATION_CACHE_DIR=$$cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.5 \
		$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder; status=$$?; rm -rf $$cache; exit $$status

test-slow: $(BIN)/amortize
	$(BIN)/python -m pytest -q -m slow

benchmark: $(BIN)/amortize
	$(BIN)/python benchmarks/core.py

clean:
	rm -rf $(VENV) amortize-demo .pytest_cache
