# syntax=docker/dockerfile:1
# users-api: gunicorn with gevent workers, as `make run` serves it, minus the dev key.
#
# The base is Debian bookworm with Debian's own Python 3.11, not python:*-slim: CI builds
# where no image registry is reachable, from a stand-in made with debootstrap out of the
# same Debian archive (.ci/stand-in-base). With Python from Debian's packages, the image
# CI tests and the one built from Docker Hub's debian:bookworm-slim hold the same Python.

# --- python: Debian bookworm and its Python 3.11 ---------------------------------------
FROM docker.io/library/debian:bookworm-slim AS python
ARG DEBIAN_FRONTEND=noninteractive
# CA certificates follow Debian's security updates (trust anchors must not go stale), so
# they are not pinned; python3 is Debian's 3.11 for all of bookworm.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# --- build: a virtualenv with the locked runtime dependencies only --------------------
FROM python AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv=3.11.2-1+b1 \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
# Its own layer: code changes do not reinstall dependencies. The builder's pip settings
# (make image passes this machine's index and CA bundle as build secrets) are mounted for
# this step only; without them pip uses its defaults.
RUN --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    --mount=type=secret,id=pip-cert \
    /opt/venv/bin/pip install --no-deps --require-virtualenv -r /tmp/requirements.lock

# --- run: the venv, the service's files, an unprivileged user --------------------------
FROM python
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATABASE_URL=sqlite:////app/data/users.sqlite3
# The SQLite default lives in /app/data; mount a volume (or set DATABASE_URL to PostgreSQL).
RUN groupadd --system --gid 10001 users-api \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin users-api \
    && mkdir -p /app/data \
    && chown 10001:10001 /app/data
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# The service's files, in one layer: .dockerignore lets in only what it needs.
COPY . ./
USER 10001:10001
EXPOSE 8080
VOLUME ["/app/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8080')}/healthz\", timeout=2)"]
# API_KEYS must be given at run time (docker run -e API_KEYS=...); without it the
# service refuses to start.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
