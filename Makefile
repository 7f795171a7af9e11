# turbohooks: `make up` runs the product, `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help up test bench lint format clean chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "turbohooks: $(PYTHON) not found; install Python 3.11+ or run make PYTHON=python3.x"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

up: $(STAMP) ## run NATS, the workers, the recorder and the gateway (PORT=8001: gateway port; CLUSTER=3: a 3-node JetStream cluster; ARGS='--quiet ...')
	$(BIN)/turbohooks up$(if $(PORT), --port $(PORT))$(if $(CLUSTER), --cluster $(CLUSTER)) $(ARGS)

test: $(STAMP) ## run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## benchmark suite: BENCHMARKS.md, docs/bench/*, README figures (QUICK=1: ~1 min, to build/bench/quick/)
	@$(BIN)/python -c 'import matplotlib, faststream, psutil' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick,--profile --readme) $(BENCH_ARGS)

lint: $(STAMP) ## ruff (format check and lint), mypy --strict and the import contracts (lint-imports)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

format: $(STAMP) ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the venv, the local data dir, the caches and the quick bench report (build/)
	rm -rf $(VENV) .turbohooks .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache build dist

chaos: $(STAMP) ## fault suite (issue 16), writes docs/reliability.md (SHORT=1: short faults, 1,000 events, no docs)
	$(BIN)/python -m tests.chaos $(if $(SHORT),--short,--write-docs) $(CHAOS_ARGS)
