# One-command set-up: every target creates .venv if missing and installs what it needs, idempotently.
# torch is installed pinned *first*, so no later requirement can pull the multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deepmr-installed
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench lint docs clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[torch,tensorflow,dask,test,docs]'
	touch $(STAMP)

# The peers the benchmarks measure against (tangermeme, bpnet-lite, statsmodels) are not needed by
# the tests, and some of their dependencies compile from source: installed only for `make bench`.
$(VENV)/.deepmr-bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: install
	$(BIN)/deepmr demo

bench: $(VENV)/.deepmr-bench-installed
	$(BIN)/python benchmarks/bench_mr.py
	$(BIN)/python benchmarks/bench_ism.py
	$(BIN)/python benchmarks/bench_deepsea_scale.py --n-sequences 16

# The site (MkDocs, built-in theme, API pages read statically from the source by griffe) builds
# offline; --strict turns every warning (broken link, unparsable docstring) into a failure.
docs: install
	$(BIN)/python -m mkdocs build --strict --site-dir site

lint: install
	$(BIN)/ruff check deepmr_kipoi model_adapters tests examples benchmarks
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build site *.egg-info
