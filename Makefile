# The verbs a newcomer needs. Every target installs what it uses into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install install-dev run migrate test lint bench clean

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

$(VENV)/.runtime: requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-dev.lock
	touch $@

# Serve on HOST:PORT (default 127.0.0.1:8080) with gunicorn's gevent workers.
run: install
	$(BIN)/gunicorn -c gunicorn.conf.py

# Apply schema migrations to DATABASE_URL (gunicorn also does this at start).
migrate: install
	$(BIN)/python -m storage upgrade

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
