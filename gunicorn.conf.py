"""gunicorn settings for users-api: `gunicorn -c gunicorn.conf.py` serves the app.

Settings come from the environment through settings.Settings, as the app's do; every
default is safe to run. (PROMETHEUS_MULTIPROC_DIR is prometheus_client's own variable:
set here for the workers when the operator has not.)
"""

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from gunicorn.glogging import Logger

import lifecycle  # its draining flag is made here, in the master, shared by every worker
from logging_ext.setup import choose_format, logging_config
from serving.backlog import refuse_new_connections
from settings import Settings, SettingsError

try:
    settings = Settings.from_env()
except SettingsError as exc:
    sys.exit(f"users-api cannot start: SettingsError: {exc}")

# The WSGI face of the connexion app (see connexion_ext/bridge.py).
wsgi_app = "app:wsgi"

bind = f"{settings.host}:{settings.port}"

# gevent workers (the design card): each worker serves many requests at once, switching
# greenlets while one waits on the database or a slow client. gunicorn's own, except that
# a stopping worker answers the connections already waiting for it (serving/worker.py).
worker_class = "serving.worker.GeventWorker"
workers = settings.workers
# Open connections per worker; the database pool (DB_POOL_SIZE) bounds queries, not this.
worker_connections = settings.worker_connections

# Monkey-patching happens in each worker before it imports the app. Preloading would
# import sockets, threads and the database driver in the master, unpatched.
preload_app = False
# ...but these three, the slowest of the app's imports that open nothing and keep no lock
# across a greenlet switch, are imported here once and forked ready, so a new worker
# boots faster (not psycopg: it picks its wait function when imported, and would pick
# the blocking one before gevent patches).
import jsonschema  # noqa: E402, F401
import sqlalchemy  # noqa: E402, F401
import yaml  # noqa: E402, F401

# A worker silent for this long is killed and replaced (gevent workers heartbeat from
# their own loop, so only a truly stuck worker hits this).
timeout = 30
# On SIGTERM, /readyz answers 503 at once while everything else is still served for
# DRAIN_SECONDS, so that balancers stop sending new requests; then workers stop
# accepting and get graceful_timeout to finish in-flight requests.
drain_seconds = settings.drain_seconds
graceful_timeout = settings.graceful_timeout
# Behind a load balancer, keep idle connections a little longer than the balancer does.
keepalive = 5

# Recycle workers now and then so a slow leak can never take the service down; jitter
# (a tenth) keeps workers from reaching it together. gunicorn's own recycling stops the
# worker first and forks its replacement after: with two recycling together nobody
# accepted for seconds (every request, /healthz too, waited 4.5 to 6.8 s), and even one
# at a time left the rest alone with all the traffic while the new one booted. Here
# (pre_request, post_worker_init) the replacement boots first, beside the workers that
# keep serving, and only then does the recycling worker stop; one recycle at a time.
max_requests = settings.max_requests
max_requests_jitter = max_requests // 10
# The recycle under way: a file made with O_EXCL (atomic across processes) holding the
# monotonic time it was made and the pid of the worker to retire; the first worker forked
# after that claims it (another O_EXCL file, named after that time).
_RECYCLING = os.path.join(tempfile.mkdtemp(prefix="users-api-run-"), "recycling")

# Request line and header limits: refuse absurd requests before the app sees them.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Trust X-Forwarded-* only from these proxy addresses (comma-separated, or *).
forwarded_allow_ips = settings.forwarded_allow_ips

# gunicorn 23+'s runtime control socket: one fixed path per user, which several
# instances (tests, replicas on one host) would fight over; we manage workers by signals.
control_socket_disable = True

# The app writes one access line per request itself (logging_ext), for every response;
# gunicorn's own messages go through the same JSON formatter.
accesslog = None
errorlog = "-"
loglevel = settings.log_level.lower()
logconfig_dict = logging_config(loglevel, choose_format(settings.log_format, sys.stdout))
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
        "users-api listening on %s with %d gevent workers (%s)",
        bind,
        server.num_workers,
        worker_class,
    )
    _stop_gracefully_on_sigterm(server)


def _stop_gracefully_on_sigterm(arbiter):  # type: ignore[no-untyped-def]
    """SIGTERM: drain, make the kernel refuse new connections, then gunicorn's stop.

    The SIGTERM handler (the master's main thread) only raises the shared draining flag,
    which /readyz reads in every worker, and wakes a thread that waits drain_seconds,
    has the kernel refuse new connections while the workers take the ones it queued
    (serving/backlog.py), and hands gunicorn its SIGTERM. A second SIGTERM stops at
    once; SIGINT and SIGQUIT stay gunicorn's quick stop.
    """
    asked = threading.Event()

    def on_sigterm(sig, frame):  # type: ignore[no-untyped-def]
        if asked.is_set():
            arbiter.signal(sig, frame)
        lifecycle.begin_draining()
        asked.set()

    def stop_after_draining() -> None:
        asked.wait()
        if drain_seconds:
            arbiter.log.info("draining: /readyz fails, serving on for %g s", drain_seconds)
            threading.Event().wait(drain_seconds)
        # Not while a re-executed master (USR2) or systemd shares the listeners: they
        # would stop getting connections too.
        if not (arbiter.systemd or arbiter.reexec_pid or arbiter.master_pid):
            for listener in arbiter.LISTENERS:
                if not refuse_new_connections(listener):
                    arbiter.log.warning(
                        "stopping: this kernel keeps taking new connections on %s until"
                        " the listener closes; a few may be reset",
                        listener,
                    )
        arbiter.signal(signal.SIGTERM, None)  # gunicorn's own graceful stop from here

    threading.Thread(target=stop_after_draining, name="drain", daemon=True).start()
    signal.signal(signal.SIGTERM, on_sigterm)


def pre_request(worker, req):  # type: ignore[no-untyped-def]
    """A worker about to reach max_requests asks the master for one more worker (TTIN)
    and serves on; when that one has booted it asks the master for one fewer (TTOU),
    and the master stops the asking worker, gracefully (nworkers_changed). While another
    recycle is under way, the worker asks again a little later."""
    if worker.nr + 1 < worker.max_requests or not worker.alive:
        return
    if _take_recycling_turn():
        worker.max_requests = sys.maxsize  # gunicorn must not stop it: the master will
        worker.log.info("recycling: asking for a new worker before one stops")
        os.kill(worker.ppid, signal.SIGTTIN)
    else:
        worker.max_requests += max(1, max_requests // 50)


# A turn not handed back within this many seconds (its new worker never booted, say) is
# given up, so that one lost recycle cannot stop every later one. A boot takes 1-3 s.
RECYCLE_TURN_LIMIT = 60.0


def _take_recycling_turn() -> bool:
    try:
        turn = os.open(_RECYCLING, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if not _turn_is_stale():
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_RECYCLING)
        return _take_recycling_turn()
    os.write(turn, f"{time.monotonic()!r} {os.getpid()}".encode())
    os.close(turn)
    return True


def _read_turn() -> tuple[str, int] | None:
    """The recycle under way: when it began (as written) and the worker to retire."""
    try:
        with open(_RECYCLING, encoding="ascii") as turn:
            taken_at, pid = turn.read().split()
        float(taken_at)
        return taken_at, int(pid)
    except (FileNotFoundError, ValueError):
        return None  # none, or being written this instant


def _turn_is_stale() -> bool:
    turn = _read_turn()
    return turn is not None and time.monotonic() - float(turn[0]) > RECYCLE_TURN_LIMIT


def nworkers_changed(server, new_value, old_value):  # type: ignore[no-untyped-def]
    """In the master, before it acts on TTOU by stopping its oldest worker: a recycle's
    own worker is made the oldest. Otherwise another would stop in its place, and the
    recycling one, with no request limit left, would serve on for good."""
    turn = _read_turn()
    if old_value is None or new_value >= old_value or turn is None:
        return
    retiring = server.WORKERS.get(turn[1])
    if retiring is not None:
        retiring.age = min(worker.age for worker in server.WORKERS.values()) - 1


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    worker.forked_at = time.monotonic()


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Booted: the app is loaded and the worker is about to accept (the spawned greenlet
    runs once it does). If a recycle is under way that it was forked for, the recycling
    worker can go now; the next recycle may begin a second later, when this one has
    served some requests."""
    import gevent

    worker.log.info("worker booted in %.2f s", time.monotonic() - worker.forked_at)
    gevent.spawn(_retire_the_recycled, worker)


def _retire_the_recycled(worker):  # type: ignore[no-untyped-def]
    import gevent

    turn = _read_turn()
    if turn is None or float(turn[0]) >= worker.forked_at:
        return  # none, or one that began after this worker was forked: not its own
    claimed = f"{_RECYCLING}.{turn[0]}"
    try:
        os.close(os.open(claimed, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except (FileExistsError, FileNotFoundError):  # claimed already, or stopping
        return
    os.kill(worker.ppid, signal.SIGTTOU)
    gevent.sleep(1.0)
    for done in (_RECYCLING, claimed):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(done)


def post_request(worker, req, environ, resp):  # type: ignore[no-untyped-def]
    """Let the worker's other connections take a turn before this one's next request.

    A keep-alive client that sends its next request at once finds it already read, so
    its greenlet never waits and the worker's other connections starve: under wrk with
    32 connections, p99 was 1.3 s against a p50 of 1.2 ms.
    """
    from gevent import sleep

    sleep(0)


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    """A worker that stopped cleanly leaves at once. Tearing the interpreter down (every
    module, every object) took 0.6 to 3 s, and more on a busy host; during a recycle the
    other workers serve alone until the master sees the exit and forks the replacement.
    A worker leaving with an error (it could not boot, say) exits the usual way, with
    its code, which the master acts on."""
    leaving = sys.exc_info()[1]
    if os.getpid() == worker.pid and isinstance(leaving, SystemExit) and not leaving.code:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from logging_ext.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
    shutil.rmtree(os.path.dirname(_RECYCLING), ignore_errors=True)
