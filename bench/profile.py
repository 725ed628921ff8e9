"""Where users-api's instructions go, per request and per Python function, from callgrind.

callgrind sees only the interpreter's C functions, unless Python (3.12+) runs with its
perf trampolines: each Python function then enters through a small function of its own,
which callgrind counts, and whose address /tmp/perf-PID.map names. So, with a Python 3.12
environment holding the same locks:

    export BENCH_CALLGRIND_DIR=profile PYTHONPERFSUPPORT=1
    py312/bin/python -m bench.instructions users-api get   # a 3.12 venv with the same locks
    .venv/bin/python -m bench.profile profile users-api get

prints each Python function's inclusive instructions per request ((N+400 run - N run) /
400, as bench.instructions counts), largest first. Inclusive: the function and all it
calls, so nested layers add up along the call chain, not across it.
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

from bench.instructions import BASE, EXTRA

_NAMED = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")
# A cost line starts with its position (a line number, +n, -n or *), then the Ir count.
_COST_LINE = set("0123456789+-*")
ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def inclusive_costs(callgrind_out: str) -> dict[str, int]:
    """Inclusive Ir of every function in a callgrind file (positions: line; event: Ir).

    A function's own cost lines plus the cost recorded for each call it makes (callgrind
    records a call's inclusive cost on the line after `calls=`). Recursion levels that
    callgrind keeps apart (f'2) count inside the outermost f, as calls.
    """
    names: dict[str, str] = {}
    costs: dict[str, int] = defaultdict(int)
    current = ""
    for line in callgrind_out.splitlines():
        named = _NAMED.match(line)
        if named:
            kind, number, name = named.groups()
            if name:
                names[number] = name
            if kind == "fn":
                current = names[number]
        elif line[:1] in _COST_LINE and current:
            fields = line.split()
            if len(fields) >= 2:
                costs[current] += int(fields[1])
    return dict(costs)


def perf_names(maps: list[str]) -> dict[int, str]:
    """Trampoline address -> Python function, from perf map lines `start size name`."""
    named = {}
    for text in maps:
        for line in text.splitlines():
            start, _size, name = line.split(" ", 2)
            named[int(start, 16)] = name.removeprefix("py::")
    return named


def python_functions(costs: dict[str, int], named: dict[int, str]) -> dict[str, int]:
    """Keep the trampolines (callgrind names them 0x...), named after their function.

    Each run names its own: a child makes trampolines for what it first runs after the
    fork, at addresses that differ from one child to the next.
    """
    found: dict[str, int] = defaultdict(int)
    for name, cost in costs.items():
        if name.startswith("0x") and "'" not in name:
            function = named.get(int(name, 16))
            if function:
                found[_short(function)] += cost
    return dict(found)


def per_request(base: dict[str, int], more: dict[str, int], extra: int = EXTRA) -> dict[str, float]:
    return {name: (more[name] - base.get(name, 0)) / extra for name in more}


def _short(function: str) -> str:
    """`qualname:/long/path/site-packages/flask/app.py` -> `flask/app.py:qualname`."""
    qualname, _, path = function.rpartition(":")
    for marker in ("site-packages/", ROOT):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{qualname}"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    directory, contender, workload = Path(argv[0]), argv[1], argv[2]
    texts = [
        (directory / f"callgrind.{contender}.{workload}.{n}.out").read_text()
        for n in (BASE, BASE + EXTRA)
    ]
    pids = [int(re.search(r"^pid: (\d+)", text, re.MULTILINE).group(1)) for text in texts]  # type: ignore[union-attr]
    maps = {
        int(path.name.split(".")[2]): path.read_text()
        for path in directory.glob(f"perf.{contender}.*.map")
    }
    if not maps:
        print(f"no perf maps in {directory}: run with PYTHONPERFSUPPORT=1", file=sys.stderr)
        return 1
    # The parent's map names what it ran before forking; each child's, what it ran after.
    shared = [text for pid, text in maps.items() if pid not in pids]
    runs = [
        python_functions(inclusive_costs(text), perf_names([*shared, maps.get(pid, "")]))
        for text, pid in zip(texts, pids, strict=True)
    ]
    functions = per_request(runs[0], runs[1])
    print("| inclusive instructions per request | function |\n|--:|---|")
    for function, cost in sorted(functions.items(), key=lambda item: -item[1]):
        if cost >= 1000:
            print(f"| {cost:,.0f} | `{function}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
