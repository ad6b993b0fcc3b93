# make demo | make test | make dev — each creates .venv (and installs the project) when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.drugrepo-installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: demo test dev venv

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

test: $(INSTALLED)
	$(BIN)/pytest -q -n 2

dev: $(INSTALLED) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml
