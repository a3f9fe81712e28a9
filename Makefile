# leadml: `make help` lists the targets. Everything runs from a virtual environment in .venv
# (created on first use) unless LEADML_PYTHON points at an interpreter to use as is.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DB ?= sqlite:///data/leads.db
DB_FILE := data/leads.db
LEADS ?= 30000
SEED ?= 7
CONFIG ?= configs/train.yaml
MODEL ?=# empty: the champion alias once promoted, else models/latest (one rule)

.PHONY: help install data train score serve test lint bench evaluate clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,spark]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install leadml with dev and spark extras

$(DB_FILE): | $(STAMP)
	$(PY) -m leadml generate --db sqlite:///$(DB_FILE) --leads $(LEADS) --seed $(SEED)

data: $(DB_FILE) ## Generate the embedded synthetic lead database (data/leads.db) if absent

train: $(STAMP) $(DB_FILE) ## Install, generate the database if absent, train, write models/<version>
	$(PY) -m leadml train --config $(CONFIG)

evaluate: $(STAMP) $(DB_FILE) ## Rolling-origin evaluation of leadml against the baselines
	$(PY) -m leadml evaluate --config $(CONFIG)

score: $(STAMP) $(DB_FILE) ## Score the open leads (DB=..., MODEL=...; default: the champion, else models/latest)
	$(PY) -m leadml score --db $(DB) $(if $(MODEL),--model $(MODEL))

serve: $(STAMP) ## Start the HTTP scorer and sales-ops pages on 127.0.0.1:8000
	$(PY) -m leadml serve --db $(DB) $(if $(MODEL),--model $(MODEL))

test: $(STAMP) ## Run the whole test suite (PostgreSQL tests need LEADML_TEST_PG_URL)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP) ## ruff and the import-order contracts
	$(VENV)/bin/ruff check leadml tests bench
	$(VENV)/bin/ruff format --check leadml tests bench
	$(VENV)/bin/lint-imports

bench: $(STAMP) ## Run the benchmarks in bench/ and print measured figures
	$(PY) bench/run_all.py

clean: ## Remove generated data, models and MLflow runs (keeps .venv)
	rm -rf data/*.db models/[0-9]* models/latest mlruns
