# The verbs a newcomer needs. Every target installs what it uses into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install install-dev run serve migrate key test contract fuzz lint bench wrk clean

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

$(VENV)/.runtime: requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements.lock -r requirements-dev.lock
	touch $@

# Serve on HOST:PORT (default 127.0.0.1:8080) with gunicorn's gevent workers. Without
# API_KEYS, a development key is made once for this checkout and printed.
run: install
	API_KEYS="$${API_KEYS:-$$($(BIN)/python -m serving.keys dev)}" \
		$(BIN)/gunicorn -c gunicorn.conf.py

# The same app in one process on gevent's own server (for one-process containers).
serve: install
	API_KEYS="$${API_KEYS:-$$($(BIN)/python -m serving.keys dev)}" \
		$(BIN)/python -m serving serve

# Apply schema migrations to DATABASE_URL (gunicorn and `serve` also do it at start).
migrate: install
	$(BIN)/python -m storage upgrade

# Print a new API key and its API_KEYS entry: make key NAME=alice ROLE=read
key: install
	$(BIN)/python -m serving.keys new $(or $(NAME),$(USER)) $(or $(ROLE),read)

test: install-dev
	$(BIN)/python -m pytest

# schemathesis over the network against gunicorn as deployed (also part of `make test`).
contract: install-dev
	$(BIN)/python -m pytest -m contract --no-cov

# The same, deeper: many more examples and a 20-minute budget.
fuzz: install-dev
	CONTRACT_MAX_EXAMPLES=500 CONTRACT_MAX_TIME=1200 $(BIN)/python -m pytest -m contract --no-cov

lint: install-dev node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/openapi-spec-validator openapi.yaml
	node_modules/.bin/spectral lint --fail-severity=warn openapi.yaml
	$(BIN)/hadolint Dockerfile

# Spectral (the spec linter) comes from npm, pinned in package-lock.json.
node_modules/.installed: package-lock.json
	@command -v npm >/dev/null || { echo "make lint needs Node.js and npm for Spectral"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# users-api against plain Flask, FastAPI and a raw WSGI app, on SQLite and PostgreSQL
# (about 7 minutes; needs 2 CPUs and wrk). Results land in bench/results/
bench: $(VENV)/.bench
	@command -v wrk >/dev/null || $(MAKE) --no-print-directory wrk
	$(BIN)/python -m bench.run

# The load generator, from Debian, where this machine lets us install it.
wrk:
	@command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] || { echo "make bench needs wrk (apt-get install wrk)"; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk

$(VENV)/.bench: $(VENV)/.runtime bench/requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements.lock -r bench/requirements.lock
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
