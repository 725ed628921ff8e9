"""`python -m serving serve`: one process, gevent's own WSGI server, no gunicorn.

The tutorial's lighter entry for container platforms that run one process per
container and scale by replicas. Same app, same bridge, same JSON logs; SIGTERM fails
/readyz at once and serves on for DRAIN_SECONDS, then stops accepting (answering the
connections already accepted), lets in-flight requests finish (GRACEFUL_TIMEOUT
seconds), closes the database pool and exits 0.
"""

from gevent import monkey

monkey.patch_all()  # before anything imports sockets, threads or the database driver

import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import structlog  # noqa: E402
from gevent.pool import Pool  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

import lifecycle  # noqa: E402
from serving.backlog import close_answering_the_backlog, refuse_new_connections  # noqa: E402


def serve() -> int:
    from serving.preflight import main as preflight

    if preflight() != 0:
        return 1
    from app import create_app
    from connexion_ext import to_wsgi
    from settings import Settings

    settings = Settings.from_env()
    app = create_app(settings)
    log = structlog.get_logger("users_api.server")
    host, port = settings.host, settings.port
    grace, drain = settings.graceful_timeout, settings.drain_seconds
    # gevent's own per-request log is off: logging_ext writes the access lines. The pool
    # lets the stop wait for the requests in flight.
    server = WSGIServer((host, port), to_wsgi(app), log=None, error_log=log, spawn=Pool())

    def stop() -> None:
        if server.closed:
            return
        log.info("stopping: finishing in-flight requests", grace_seconds=grace)
        # serve_forever then gives the requests in flight `grace` seconds.
        refuse_new_connections(server.socket)
        close_answering_the_backlog(server)

    def drain_then_stop() -> None:
        if lifecycle.draining():
            stop()  # a second SIGTERM: stop now
            return
        lifecycle.begin_draining()
        log.info("draining: /readyz fails, serving on", drain_seconds=drain)
        gevent.sleep(drain)
        if not server.closed:
            stop()

    gevent.signal_handler(signal.SIGTERM, drain_then_stop)  # each call in a new greenlet
    gevent.signal_handler(signal.SIGINT, stop)
    log.info("users-api listening", address=f"{host}:{port}", server="gevent.pywsgi")
    server.serve_forever(stop_timeout=grace)
    app.app.extensions["user_store"].engine.dispose()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        print("usage: python -m serving serve", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    sys.exit(serve())
