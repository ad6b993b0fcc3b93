# make demo | make test | make dev — each creates .venv (and installs the project) when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.drugrepo-installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: demo test test-fast lint dev venv postgres chromium redis prometheus checkov docker-constraints

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[dev]"
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(INSTALLED) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m drugrepo_assets.demo

# PostgreSQL server binaries for the tests that start one (drugrepo_assets_tests/postgres.py):
# on PATH or under /usr/lib/postgresql/*/bin, else Debian's package is installed.
PG_INITDB := $(firstword $(shell command -v initdb 2>/dev/null) $(wildcard /usr/lib/postgresql/*/bin/initdb))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

postgres:
ifeq ($(PG_INITDB),)
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends postgresql
endif

# redis-server for the API tests that start one (drugrepo_assets_tests/api/servers.py): Debian's package when missing.
REDIS_SERVER := $(shell command -v redis-server 2>/dev/null)

redis:
ifeq ($(REDIS_SERVER),)
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends redis-server
endif

# Prometheus and promtool for the monitoring tests (drugrepo_assets_tests/test_monitoring.py): Debian's package when missing.
PROMETHEUS := $(shell command -v promtool 2>/dev/null)

prometheus:
ifeq ($(PROMETHEUS),)
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends prometheus
endif

# checkov (test_infra's policy scan of infra/) in its own venv: its pins (boto3, packaging, networkx) clash with the project's.
CHECKOV_VENV := .venv-checkov

checkov: $(CHECKOV_VENV)/bin/checkov

$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install checkov==3.3.30

# Chromium for the browser test (drugrepo_assets_tests/test_e2e_ui.py, driven by Playwright, which
# never downloads a browser here): Debian's package when missing.
CHROMIUM := $(firstword $(shell command -v chromium 2>/dev/null) $(wildcard /usr/bin/chromium))

chromium:
ifeq ($(CHROMIUM),)
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium
endif

# docker/constraints.txt: the exact versions of .venv, pinned by every image.
docker-constraints: $(INSTALLED)
	{ head -n 2 docker/constraints.txt; $(BIN)/pip freeze --exclude-editable | sed -e 's/+cpu$$//'; } > docker/constraints.txt.new
	mv docker/constraints.txt.new docker/constraints.txt

# ruff (lint + format) and mypy, configured in pyproject.toml; `make test` runs them before the suite.
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint postgres redis chromium prometheus checkov
	$(BIN)/pytest -q -n 3

# the fast core: no real services, no library-scale runs
test-fast: $(INSTALLED)
	$(BIN)/pytest -q -n 3 -m "not services and not scale"

dev: $(INSTALLED) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml
