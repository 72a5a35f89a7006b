# `make` runs the CI gate (lint + tests). See README for the two commands a new user needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK := $(PYTHON) scripts/stack.py
PACKAGES := feedback_ingest feedback_worker

# Load-test knobs (README: "The load test").
EVENTS ?= 5000
PRODUCERS ?= 2
WORKERS ?= 2
DATASET ?= polis
RATE ?=
export EVENTS PRODUCERS WORKERS DATASET RATE

.DEFAULT_GOAL := all
.PHONY: all setup up down lint format test loadtest chaos clean

all: lint test

$(BIN)/python: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/python

# Everything the tests and the load test need: the virtualenv, redis-server and FerretDB.
setup: $(BIN)/python
	$(STACK) install >/dev/null

up: setup
	$(STACK) up

down:
	$(STACK) down

lint: $(BIN)/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict $(PACKAGES)

format: $(BIN)/python
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: setup
	$(BIN)/pytest

# Uses FEEDBACK_REDIS_URL / FEEDBACK_MONGODB_URI when set; otherwise starts the local stack.
loadtest: setup
	$(BIN)/python -m bench.loadtest

# Kills workers, restarts Redis and FerretDB, pauses workers; on a private local stack.
chaos: setup
	$(BIN)/python -m bench.chaos

clean: down
	rm -rf .local $(VENV)
