"""gunicorn settings for users-api: `gunicorn -c gunicorn.conf.py` serves the app.

Environment variables are read here and only here; every default is safe to run.
"""

import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile

from gunicorn.glogging import Logger

from logging_ext.setup import choose_format, logging_config

# The WSGI face of the connexion app (see serving/bridge.py).
wsgi_app = "app:wsgi"

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"

# gevent workers (the design card): each worker serves many requests at once, switching
# greenlets while one waits on the database or a slow client.
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() * 2 + 1)
# Open connections per worker; the database pool (DB_POOL_SIZE) bounds queries, not this.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))

# Monkey-patching happens in each worker before it imports the app. Preloading would
# import sockets, threads and the database driver in the master, unpatched.
preload_app = False

# A worker silent for this long is killed and replaced (gevent workers heartbeat from
# their own loop, so only a truly stuck worker hits this).
timeout = 30
# On SIGTERM workers stop accepting and get this long to finish in-flight requests;
# shorter than the usual 30 s container stop grace period so we exit before SIGKILL.
graceful_timeout = 25
# Behind a load balancer, keep idle connections a little longer than the balancer does.
keepalive = 5

# Recycle workers now and then so a slow leak can never take the service down; jitter
# keeps workers from restarting all at once.
max_requests = 10000
max_requests_jitter = 1000

# Request line and header limits: refuse absurd requests before the app sees them.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Trust X-Forwarded-* only from these proxy addresses (comma-separated, or *).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# gunicorn 23+'s runtime control socket: one fixed path per user, which several
# instances (tests, replicas on one host) would fight over; we manage workers by signals.
control_socket_disable = True

# The app writes one access line per request itself (logging_ext), for every response;
# gunicorn's own messages go through the same JSON formatter.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logconfig_dict = logging_config(loglevel, choose_format(os.environ.get("LOG_FORMAT"), sys.stdout))
# Python warnings become log records too (workers inherit this from the master).
logging.captureWarnings(True)


class AppWritesAccessLines(Logger):
    """gunicorn's logger without its access line.

    With logconfig_dict set, gunicorn builds an access record for every request (about
    7% of a worker's time) even though no handler takes it.
    """

    def access(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
        pass


logger_class = AppWritesAccessLines

# Each worker writes its metric samples here and /metrics adds them up. Set before any
# worker imports prometheus_client; a fresh directory each start so old counts vanish.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="users-api-metrics-")
    _OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"]
else:
    _OWN_METRICS_DIR = None


def on_starting(server):  # type: ignore[no-untyped-def]
    """Migrate and check the app once, in a child process, before forking workers."""
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "serving.preflight"], check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def when_ready(server):  # type: ignore[no-untyped-def]
    server.log.info(
        "users-api listening on %s with %d %s workers",
        bind,
        server.num_workers,
        worker_class,
    )


def post_request(worker, req, environ, resp):  # type: ignore[no-untyped-def]
    """Let the worker's other connections take a turn before this one's next request.

    A keep-alive client that sends its next request at once finds it already read, so
    its greenlet never waits and the worker's other connections starve: under wrk with
    32 connections, p99 was 1.3 s against a p50 of 1.2 ms.
    """
    from gevent import sleep

    sleep(0)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from logging_ext.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
