# The interface: `make run` starts everything locally, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
AWS_PORT ?= 4566
FAKE_PORT ?= 8900
USER ?= alice
ADMIN ?=
STAGE ?= dev

.PHONY: help install run test test-unit test-integration test-e2e lint typecheck token bench \
        package lint-infra smoke deploy daily alerts rewrap clean

help:
	@echo "make run      start the whole service locally (API on 127.0.0.1:$(PORT))"
	@echo "make test     lint, type-check and run every test tier"
	@echo "make token USER=alice [ADMIN=1]   print a local bearer token (last line)"
	@echo "make bench    run the benchmarks and write bench/results.md"

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m devtools.localstack run --port $(PORT) --aws-port $(AWS_PORT) --fake-port $(FAKE_PORT)

token: $(STAMP)
	@$(PY) -m devtools.token $(USER) $(if $(ADMIN),--admin,)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

typecheck: lint

test: $(STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider

test-unit: $(STAMP)
	$(PY) -m pytest -q -m unit

test-integration: $(STAMP)
	$(PY) -m pytest -q -m integration

test-e2e: $(STAMP)
	$(PY) -m pytest -q -m e2e

bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .local build .pytest_cache .mypy_cache .ruff_cache

daily: $(STAMP)
	$(PY) -m devtools.daily daily

alerts: $(STAMP)
	$(PY) -m devtools.daily alerts

rewrap: $(STAMP)
	@test -n "$(NEW_KEY)" || (echo "usage: make rewrap NEW_KEY=<kms key id, arn or alias>"; exit 2)
	$(PY) -m devtools.rewrap $(NEW_KEY)
