# Two commands a new machine needs: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick lint typecheck docs screenshots bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Conveyor needs Python 3.11 or newer; found " + sys.version.split()[0] + ". Run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

## demo: Dev -> Test -> Prod on examples/ with a fresh server (serves until Ctrl-C)
demo: $(STAMP)
	@$(BIN)/conveyor demo

## test: every check CI runs: lint, format, types, tests (e2e included), on two processes
## (pytest-xdist; a file's tests stay together, so its server fixtures start once): 12 min
## against 20 serially, measured on two cores
test: lint typecheck
	$(BIN)/python -m pytest -n 2 --dist loadfile

## test-quick: the same without the slow end-to-end tests, on two processes (pytest-xdist)
test-quick: lint typecheck
	$(BIN)/python -m pytest -m 'not e2e' -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## docs: regenerate the CLI reference from --help and the permission tables of docs/security.md
docs: $(STAMP)
	$(BIN)/python docs/cli_reference.py > docs/cli.md
	$(BIN)/python docs/security_reference.py

## screenshots: regenerate the console's screenshots in docs/ (runs the demo; needs chromium)
screenshots: $(STAMP)
	$(BIN)/python docs/console_screenshots.py

## bench: run the benchmarks (ratios measured side by side)
bench: $(STAMP)
	$(BIN)/python bench/config_get.py
	$(BIN)/python bench/proxy_overhead.py
	$(BIN)/python bench/switch_under_load.py
	$(BIN)/python bench/runtime_build.py
	$(BIN)/python bench/promotion_latency.py
	$(BIN)/python bench/sandbox_cost.py
	$(BIN)/python bench/sleep_footprint.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
