# Certyard: `make run` starts the platform, `make test` runs every test.
# Both set up everything they need on a fresh machine, and cost nothing when warm.

PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The scale-out tests run against the PostgreSQL server on this machine.
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/certyard

.PHONY: run test setup test-plugins system-deps lint format test-fast test-postgres bench schemathesis-deep agent-wheel clean

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The handlers that misbehave on purpose, and the example extensions (examples/), for the
# tests only (never in `make run`).
TEST_PLUGINS := $(VENV)/.test-plugins
$(TEST_PLUGINS): $(STAMP) tests/plugins/pyproject.toml examples/pyproject.toml
	$(PYTHON) -m pip install -q --disable-pip-version-check -e tests/plugins -e examples
	touch $(TEST_PLUGINS)

test-plugins: $(TEST_PLUGINS)

## run: migrate, create the admin, start web + worker + a demo orchestrator;
## RELOAD=1 (development only) restarts web + worker when platform or extension code changes
RELOAD ?=
run: setup
	$(PYTHON) manage.py certyard_run$(if $(filter 1 yes true,$(RELOAD)), --reload)

## system-deps: Debian packages the tests drive (Chromium, pebble, cfssl, openssl), installed only if missing;
## and the PostgreSQL and Redis servers they talk to, started only if not answering
system-deps:
	bash .ci/system-deps
	bash .ci/services

## lint: ruff, then the architecture contracts of pyproject.toml ([tool.importlinter]);
## platform/ is a source root, not a package, so it goes on the path as it does for pytest
lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	PYTHONPATH=platform:. $(VENV)/bin/lint-imports --no-cache

format: setup
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

## test: everything, on SQLite, then the database-facing tests again on PostgreSQL.
## The in-process tests run on both cores (pytest-xdist, a test database per worker); the
## tests that start real platforms, agents and browsers run one at a time after them, as
## their waits and timeouts assume a machine nothing else is loading.
TEST_WORKERS ?= 2
test: setup test-plugins system-deps lint
	$(PYTHON) manage.py makemigrations --check --dry-run
	$(PYTHON) -m pytest -m "not e2e and not browser" -n $(TEST_WORKERS)
	$(PYTHON) -m pytest -m "e2e or browser"
	$(MAKE) --no-print-directory test-postgres

test-fast: setup test-plugins
	$(PYTHON) -m pytest -m "not e2e and not browser" -n $(TEST_WORKERS)

## schemathesis-deep: both APIs, every check, 100 examples per operation, the stateful phase, with figures
schemathesis-deep: setup test-plugins
	$(PYTHON) benchmarks/schemathesis_deep.py --examples 100 --stateful 200

test-postgres: setup test-plugins
	DATABASE_URL=$(TEST_POSTGRES_URL) $(PYTHON) -m pytest -m "not e2e and not browser" -n $(TEST_WORKERS) tests/certyard

## bench: every script in benchmarks/, at small sizes (minutes, not hours), on throwaway
## SQLite databases (DATABASE_URL is not passed: inventory_ingest.py would wipe it); each
## script's docstring says how to run it at full size. BENCH_ARGS_<script> overrides one.
BENCHMARKS := $(filter-out benchmarks/_%,$(wildcard benchmarks/*.py))
BENCH_ARGS_inventory_e2e ?= 2000
BENCH_ARGS_inventory_ingest ?= 5000
BENCH_ARGS_long_poll_load ?= 200 --samples 50 --jobs 20
BENCH_ARGS_metadata_backfill ?= 5000
BENCH_ARGS_pki_issue ?= 200
BENCH_ARGS_ocsp_flood ?= 2000
BENCH_ARGS_request_overhead ?= 200
BENCH_ARGS_pki_vs_cfssl ?= 50 --profile
# deploy.py at full size (20 agents, 1,000 PEM + 1,000 PKCS#12 stores) is the issue-16 goal run.
BENCH_ARGS_deploy ?= --agents 20 --stores 1000
bench: setup
	$(foreach script,$(BENCHMARKS),echo "== $(script)" && env -u DATABASE_URL \
	  $(PYTHON) $(script) $(BENCH_ARGS_$(basename $(notdir $(script)))) && ) true

## agent-wheel: the agent's own package (orchestrators/ alone, no Django) in dist/; prints its path
agent-wheel: setup
	@$(PYTHON) distribution/build_agent_wheel.py dist

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache
