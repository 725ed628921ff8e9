"""Where a GET by id spends its time, layer by layer, from a py-spy profile of a worker.

    pip install py-spy                       # in a venv of its own; not a dependency
    py-spy record -r 250 -d 10 -f raw -o profile.txt -p <worker pid>   # while wrk runs
    .venv/bin/python -m bench.layers profile.txt 1240      # 1240: the req/s wrk saw

Prints the README's table: each layer's share of the worker's samples, and that share
of a request's time at the given throughput. Each sample counts for the innermost layer
on its stack, so the shares add up to 100%.
"""

import sys

# (layer, a substring of the stack frame where it starts), outermost first.
LAYERS: list[tuple[str, str | None]] = [
    ("gunicorn: HTTP parsing, socket reads and writes, the per-request yield", None),
    ("bridge: WSGI to ASGI and back, connexion's outer error handler", "GreenletBridge.__call__"),
    (
        "request id, JSON access line, Prometheus metrics (`logging_ext`)",
        "RequestLogMiddleware.__call__",
    ),
    ("security headers, body limit (`middleware/`)", "ResponseHeadersMiddleware.__call__"),
    ("connexion: exception handling, Swagger UI check", "connexion/middleware/exceptions.py"),
    ("connexion: routing", "RoutingMiddleware.__call__"),
    ("connexion: API-key check", "SecurityOperation.__call__"),
    ("connexion: strict JSON, parameter and body validation", "StrictJsonMiddleware.__call__"),
    ("connexion: context for the handler", "LifespanMiddleware.__call__"),
    ("bridge: ASGI to Flask (`InlineFlask`)", "InlineFlask.__call__"),
    ("Flask: request object and context, URL routing, response to WSGI", "Flask.wsgi_app"),
    ("the operation's view: arguments in, response out (`connexion_ext`)", "fn.<locals>.view"),
    ("the handler and `storage` (SQLAlchemy, SQLite)", "get_user (handlers/users.py"),
]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, requests_per_second = argv[0], float(argv[1])
    own = [0] * len(LAYERS)
    total = 0
    with open(path, encoding="utf-8") as profile:
        for line in profile:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            innermost = max(
                i for i, (_layer, entry) in enumerate(LAYERS) if entry is None or entry in stack
            )
            own[innermost] += int(count)
            total += int(count)
    if not total:
        print(f"{path} holds no samples", file=sys.stderr)
        return 1
    microseconds = 1e6 / requests_per_second
    print("| layer | share | µs |\n|---|--:|--:|")
    for (layer, _entry), samples in zip(LAYERS, own, strict=True):
        print(f"| {layer} | {samples / total:.0%} | {samples / total * microseconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
