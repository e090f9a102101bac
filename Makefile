# The two commands of the README: `make run` and `make test`. Both set everything up from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
POSTGRES_TEST_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
CONFORMANCE ?= $(firstword $(wildcard ../shared/conformance /work/shared/conformance))

.PHONY: run test install services lint typecheck test-sqlite test-postgresql conformance clean

run: install
	$(BIN)/onderwijsregio serve

test: install services lint typecheck test-sqlite test-postgresql

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

services:
	scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test-sqlite: install
	ONDERWIJSREGIO_TEST_BACKEND=sqlite ONDERWIJSREGIO_TEST_REQUIRE_CHROMIUM=1 $(BIN)/python -m pytest -q

test-postgresql: install services
	ONDERWIJSREGIO_TEST_BACKEND=postgresql ONDERWIJSREGIO_TEST_POSTGRES_URL=$(POSTGRES_TEST_URL) \
		ONDERWIJSREGIO_TEST_REQUIRE_CHROMIUM=1 $(BIN)/python -m pytest -q

# The whole contract over HTTP: the shared black-box suite on SQLite and on PostgreSQL (Redis rate
# limits and S3 storage there), then Schemathesis against our own /openapi.json.
conformance: install services
	scripts/conformance.sh "$(CONFORMANCE)"
	scripts/schemathesis.sh

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
