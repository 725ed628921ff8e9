"""`python -m serving serve`: one process, gevent's own WSGI server, no gunicorn.

The tutorial's lighter entry for container platforms that run one process per
container and scale by replicas. Same app, same bridge, same JSON logs; SIGTERM stops
accepting, lets in-flight requests finish (GRACEFUL_TIMEOUT seconds), closes the
database pool and exits 0.
"""

from gevent import monkey

monkey.patch_all()  # before anything imports sockets, threads or the database driver

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import structlog  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402


def serve() -> int:
    from serving.preflight import main as preflight

    if preflight() != 0:
        return 1
    from app import create_app
    from serving.bridge import to_wsgi

    app = create_app()
    log = structlog.get_logger("users_api.server")
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8080"))
    grace = float(os.environ.get("GRACEFUL_TIMEOUT", "25"))
    # gevent's own per-request log is off: logging_ext writes the access lines.
    server = WSGIServer((host, port), to_wsgi(app), log=None, error_log=log)

    def stop() -> None:
        log.info("stopping: finishing in-flight requests", grace_seconds=grace)
        server.stop(timeout=grace)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    log.info("users-api listening", address=f"{host}:{port}", server="gevent.pywsgi")
    server.serve_forever()
    app.app.extensions["user_store"].engine.dispose()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        print("usage: python -m serving serve", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    sys.exit(serve())
