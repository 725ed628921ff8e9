# The verbs a newcomer needs. Every target installs what it uses into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The Kubernetes API the manifests in deploy/kubernetes are checked against.
K8S_VERSION := 1.32.0
CHECKOV     := .venv-checkov/bin/checkov
# The container tools, with one storage setting for building and testing (vfs works
# where overlay mounts do not).
PODMAN ?= podman --storage-driver vfs
IMAGE  ?= localhost/users-api:dev
BUILD_FLAGS ?=
BASE   := $(shell awk '$$1 == "FROM" && $$2 ~ /:/ { print $$2; exit }' Dockerfile)
# The connexion 2 contender's environment (make bench)
CONNEXION2_VENV := bench/.venv-connexion2

.PHONY: install install-dev run serve migrate key test test-fast e2e image image-test topology \
	mutation contract fuzz lint \
	bench wrk clean

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
	API_KEYS="$${API_KEYS:-$$($(BIN)/python -m apikeys dev)}" \
		$(BIN)/gunicorn -c gunicorn.conf.py

# The same app in one process on gevent's own server (for one-process containers).
serve: install
	API_KEYS="$${API_KEYS:-$$($(BIN)/python -m apikeys dev)}" \
		$(BIN)/python -m serving serve

# Apply schema migrations to DATABASE_URL (gunicorn and `serve` also do it at start).
migrate: install
	$(BIN)/python -m storage upgrade

# Print a new API key and its API_KEYS entry: make key NAME=alice ROLE=read
key: install
	$(BIN)/python -m apikeys new $(or $(NAME),$(USER)) $(or $(ROLE),read)

# The suite (under 2 minutes on 2 cores, one pytest worker per core); the slow
# end-to-end checks have targets below. A worker that runs out of tests takes some of the
# other's (worksteal): the slow live and contract tests no longer end in one worker's tail
# (123 s -> 103 s on 2 idle cores).
test: install-dev
	$(BIN)/python -m pytest --ignore=tests/e2e -m "not contract" -n auto --dist worksteal

# Three replicas behind HAProxy and PgBouncer, stopped and killed under load (about 1 min;
# needs Debian's haproxy and pgbouncer).
topology: install-dev
	$(BIN)/python -m pytest tests/e2e -m topology --no-cov -s

# Only the in-process tests: no gunicorn, no browser, no PostgreSQL (seconds).
test-fast: install-dev
	$(BIN)/python -m pytest --ignore=tests/e2e -m "not live and not contract and not postgres" --no-cov

# Slow end-to-end checks, not part of `make test`: a fresh install from requirements.lock
# alone, faults (stops, a frozen database, slow bodies, recycling), replicas migrating at
# once, PgBouncer, rate limits on Redis. The image and multi-replica ones have their own.
e2e: install-dev
	$(BIN)/python -m pytest tests/e2e -m "not image and not topology" --no-cov

# Build the container image as IMAGE. The base comes from podman's storage, else its
# registry, else a local stand-in built with debootstrap (.ci/stand-in-base). pip inside
# the build gets this machine's pip settings as build secrets (.ci/pip_secrets.py).
image:
	@$(PODMAN) image exists $(BASE) || $(PODMAN) pull --quiet $(BASE) \
		|| PODMAN="$(PODMAN)" .ci/stand-in-base $(BASE)
	secrets="$$(mktemp -d)" && trap 'rm -rf "$$secrets"' EXIT \
		&& eval $(PODMAN) build --isolation chroot --pull=never --format docker \
			"$$($(PYTHON) .ci/pip_secrets.py "$$secrets")" $(BUILD_FLAGS) --tag $(IMAGE) .

# Build the image and serve from it: health, a CRUD round trip, an unprivileged user.
image-test: install-dev
	PODMAN="$(PODMAN)" $(BIN)/python -m pytest tests/e2e -m image --no-cov

# Do the in-process tests fail when the code is broken? mutmut mutates the request path
# (handlers/, storage/, middleware/, logging_ext/, connexion_ext/, problems.py, apikeys.py,
# etags.py) one change at a time, runs the tests that reach each change, and
# tools/mutation_report.py prints the score per module (goal: 90%; every survivor
# explained in tests/mutation-survivors.md). Slow: not part of `test`.
mutation: install-dev
	rm -rf mutants
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mutmut run --max-children $(or $(JOBS),2) \
		> mutants.log 2>&1 || { tail -c 3000 mutants.log; exit 1; }
	$(BIN)/python tools/mutation_report.py

# schemathesis over the network against gunicorn as deployed (.ci/run runs it too).
contract: install-dev
	$(BIN)/python -m pytest -m contract --no-cov

# The same, deeper: many more examples and a 20-minute budget.
fuzz: install-dev
	CONTRACT_MAX_EXAMPLES=500 CONTRACT_MAX_TIME=1200 $(BIN)/python -m pytest -m contract --no-cov

lint: install-dev node_modules/.installed .venv-checkov/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/openapi-spec-validator openapi.yaml
	node_modules/.bin/spectral lint --fail-severity=warn openapi.yaml
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true node_modules/.bin/redocly lint openapi.yaml
	$(BIN)/hadolint Dockerfile
	$(BIN)/python deploy/kustomize_resources.py deploy/kubernetes >/dev/null
	$(BIN)/kubernetes-validate --strict --quiet -k $(K8S_VERSION) \
		$$($(BIN)/python deploy/kustomize_resources.py deploy/kubernetes) \
		deploy/kubernetes/secret.example.yaml
	$(CHECKOV) --quiet --compact --skip-download --framework kubernetes -d deploy/kubernetes
	$(CHECKOV) --quiet --compact --skip-download --framework dockerfile -f Dockerfile

# checkov lives in its own venv: deploy/checkov/requirements.in says why.
.venv-checkov/.installed: deploy/checkov/requirements.lock
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check \
		-r deploy/checkov/requirements.lock
	touch $@

# Spectral and Redocly CLI (the spec linters) come from npm, pinned in package-lock.json.
node_modules/.installed: package-lock.json
	@command -v npm >/dev/null || { echo "make lint needs Node.js and npm for Spectral and Redocly"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# users-api against the services people would pick instead (connexion 2 and 3, FastAPI)
# and plain Flask and raw WSGI references, on SQLite and PostgreSQL: req/s, latency and
# instructions per request (valgrind). Needs 2 CPUs, wrk and valgrind; see bench/README.md.
bench: $(VENV)/.bench $(CONNEXION2_VENV)/.installed
	@command -v wrk >/dev/null || $(MAKE) --no-print-directory wrk
	@command -v valgrind >/dev/null || { echo "make bench needs valgrind (apt-get install valgrind)"; exit 1; }
	$(BIN)/python -m bench.run

# The load generator, from Debian, where this machine lets us install it.
wrk:
	@command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] || { echo "make bench needs wrk (apt-get install wrk)"; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk

$(VENV)/.bench: $(VENV)/.runtime bench/requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements.lock -r bench/requirements.lock
	touch $@

# connexion 2 needs Flask 2.2, so its contender gets an environment of its own.
$(CONNEXION2_VENV)/.installed: bench/connexion2/requirements.lock
	test -x $(CONNEXION2_VENV)/bin/python || $(PYTHON) -m venv $(CONNEXION2_VENV)
	$(CONNEXION2_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r bench/connexion2/requirements.lock
	touch $@

clean:
	rm -rf $(VENV) $(CONNEXION2_VENV) .venv-checkov .pytest_cache .mypy_cache .ruff_cache \
		.coverage htmlcov mutants mutants.log
