# syntax=docker/dockerfile:1
# users-api: gunicorn with gevent workers, as `make run` serves it, minus the dev key.

# --- build: a virtualenv with the locked runtime dependencies only --------------------
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
# Its own layer: code changes do not reinstall dependencies.
RUN /opt/venv/bin/pip install --no-deps --require-virtualenv -r /tmp/requirements.lock

# --- run: the venv, the service's files, an unprivileged user --------------------------
FROM python:3.11.7-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATABASE_URL=sqlite:////app/data/users.sqlite3
RUN groupadd --system --gid 10001 users-api \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin users-api
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY openapi.yaml app.py settings.py gunicorn.conf.py ./
COPY handlers/ handlers/
COPY storage/ storage/
COPY logging_ext/ logging_ext/
COPY middleware/ middleware/
COPY serving/ serving/
# The SQLite default lives here; mount a volume (or set DATABASE_URL to PostgreSQL).
RUN mkdir -p /app/data && chown 10001:10001 /app/data
USER 10001:10001
EXPOSE 8080
VOLUME ["/app/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8080')}/healthz\", timeout=2)"]
# API_KEYS must be given at run time (docker run -e API_KEYS=...); without it the
# service refuses to start.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
