"""µs per GET /v1/users/{id}, each contender called directly as a WSGI app in this process.

No HTTP, no gunicorn, no second core: a quick, steady reading for comparing two versions
of the request path (`make bench` is the measurement that counts).

    .venv/bin/python -m bench.inprocess                    # users-api, plain-flask, raw-wsgi
    .venv/bin/python -m bench.inprocess users-api          # one of them
    PROFILE=tottime .venv/bin/python -m bench.inprocess users-api   # cProfile's top functions

Each contender runs in its own process on a fresh SQLite file; the result is the best of
five rounds of BENCH_REQUESTS requests (default 3000), after 500 to warm up.
"""

import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

CONTENDERS = ("users-api", "plain-flask", "raw-wsgi")
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "3000"))


def main(argv: list[str]) -> int:
    names = argv or list(CONTENDERS)
    if unknown := set(names) - set(CONTENDERS):
        print(f"unknown contender {sorted(unknown)}; choose from {CONTENDERS}", file=sys.stderr)
        return 2
    if len(names) > 1:  # one process each: no contender warms the caches of the next
        for name in names:
            subprocess.run([sys.executable, "-m", "bench.inprocess", name], check=True)
        return 0
    print(measure(names[0]))
    return 0


def measure(name: str) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as tmp:
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/users.sqlite3"
        # As gunicorn.conf.py deploys it: metrics in multiprocess files, JSON lines.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tmp)
        os.environ.setdefault("LOG_FORMAT", "json")
        app, environ = _contender(name)
        status: list[str] = []

        def start_response(line: str, _headers: Any, _exc_info: Any = None) -> None:
            status.append(line)

        def one() -> None:
            body = app(environ(), start_response)
            b"".join(body)
            if hasattr(body, "close"):
                body.close()

        # Access lines would flood the terminal; they are written, to /dev/null.
        with open(os.devnull, "w") as devnull:
            real_stdout, sys.stdout = sys.stdout, devnull
            try:
                for _ in range(500):
                    one()
                if not status[-1].startswith("200"):
                    raise SystemExit(f"{name} answered {status[-1]}")
                return _profile(one) if os.environ.get("PROFILE") else _rounds(name, one)
            finally:
                sys.stdout = real_stdout


def _rounds(name: str, one: Callable[[], None]) -> str:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(REQUESTS):
            one()
        rounds.append((time.perf_counter() - started) / REQUESTS * 1e6)
    each = " ".join(f"{us:.0f}" for us in rounds)
    return f"{name:12} {min(rounds):5.0f} µs per GET (rounds: {each})"


def _profile(one: Callable[[], None]) -> str:
    import cProfile
    import pstats

    def requests() -> None:
        for _ in range(REQUESTS):
            one()

    profile = cProfile.Profile()
    profile.runcall(requests)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats(os.environ["PROFILE"]).print_stats(40)
    return out.getvalue()


def _contender(name: str) -> tuple[Callable[..., Iterable[bytes]], Callable[[], dict[str, Any]]]:
    import storage
    from apikeys import new_key

    engine = storage.make_engine(os.environ["DATABASE_URL"])
    storage.upgrade(engine)
    user_id = storage.UserStore(engine).create(name="Ada", age=36).id
    engine.dispose()
    key, entry = new_key("bench", "write")
    app: Callable[..., Iterable[bytes]]
    if name == "users-api":
        from app import create_app
        from connexion_ext import to_wsgi
        from settings import Settings

        app = to_wsgi(create_app(Settings.from_env({**os.environ, "API_KEYS": entry})))
    elif name == "plain-flask":
        from bench.contenders.plain_flask import app
    else:
        from bench.contenders.raw_wsgi import app

    from bench.instructions import wsgi_environ

    headers = [("X-API-Key", key), ("Accept", "application/json")]

    def environ() -> dict[str, Any]:
        return wsgi_environ("GET", f"/v1/users/{user_id}", "", headers, b"")

    return app, environ


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
