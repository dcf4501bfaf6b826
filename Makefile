# `make run` sets up and serves on 127.0.0.1:8000; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-runtime run migrate test test-postgresql fuzz lint format clean

# Two marker files: .runtime once the service's own requirements are installed (all that
# `make run` and `make migrate` need), .installed once the development ones are too (tests,
# lint, types: `make install`, `make test`, `make lint`). A newer requirements file redoes
# the install that reads it. pip is upgraded only in a venv made here.
define make-venv
	test -x $(BIN)/python || { $(PYTHON) -m venv $(VENV) \
	    && $(BIN)/python -m pip install --quiet --upgrade pip; }
endef

$(BIN)/.runtime: requirements.txt requirements-assets.txt
	$(make-venv)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-assets.txt
	touch $@

$(BIN)/.installed: requirements.txt requirements-dev.txt requirements-assets.txt
	$(make-venv)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-assets.txt
	touch $(BIN)/.runtime $@

install-runtime: $(BIN)/.runtime

install: $(BIN)/.installed

run: install-runtime
	$(BIN)/python run.py

# The database `make run` would serve (DATABASE_URL, DATABASE_PATH, else ./products.db).
migrate: install-runtime
	$(BIN)/python run.py migrate

# Tests run in parallel (pytest-xdist): PYTEST_WORKERS processes, one per core by default.
PYTEST_WORKERS ?= auto

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

# The same suite on PostgreSQL: each test gets its own database on the server at
# TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test; it must be allowed
# to CREATE DATABASE).
test-postgresql: install
	TEST_ENGINE=postgresql $(BIN)/python -m pytest -n $(PYTEST_WORKERS)

# A longer fuzzing run than CI's: FUZZ_EXAMPLES per operation, a random seed unless
# FUZZ_SEED replays one (the seed is printed on failure).
FUZZ_EXAMPLES ?= 200
FUZZ_STATEFUL_STEPS ?= 20
fuzz: install
	seed=$${FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "make fuzz: FUZZ_SEED=$$seed replays this run"; \
	FUZZ_SEED=$$seed FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_STATEFUL_STEPS=$(FUZZ_STATEFUL_STEPS) \
	$(BIN)/python -m pytest tests/test_fuzz.py -p no:randomly -v

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
