"""The benchmark helpers the README quotes (`make bench` itself is measured, not tested)."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench import instructions, layers, profile, run

ROOT = Path(__file__).resolve().parent.parent


def test_inprocess_reports_microseconds_per_get_for_users_api() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", "users-api"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "BENCH_REQUESTS": "20"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    name, microseconds, unit = result.stdout.split()[:3]
    assert (name, unit) == ("users-api", "µs")
    assert float(microseconds) > 0


def test_layers_splits_a_profile_by_the_innermost_layer_of_each_sample(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    # 1 sample in gunicorn, 2 in the access-line middleware, 1 in the handler.
    outer = "handle (gunicorn/workers/ggevent.py:1)"
    bridge = "GreenletBridge.__call__ (serving/bridge.py:53)"
    logs = "RequestLogMiddleware.__call__ (logging_ext/middleware.py:44)"
    handler = "get_user (handlers/users.py:44)"
    profile = tmp_path / "profile.txt"
    profile.write_text(
        f"{outer} 1\n{outer};{bridge};{logs} 2\n{outer};{bridge};{logs};x;{handler};y 1\n"
    )
    assert layers.main([str(profile), "1000"]) == 0
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
        for line in capsys.readouterr().out.splitlines()[2:]
    }
    assert rows[layers.LAYERS[0][0]] == ["25%", "250 |"]
    assert rows[layers.LAYERS[2][0]] == ["50%", "500 |"]  # the access-line middleware
    assert rows[layers.LAYERS[-1][0]] == ["25%", "250 |"]
    assert sum(int(share.rstrip("%")) for share, _ in rows.values()) == 100


# A callgrind output file as valgrind 3.19 writes it (abridged): names are given once and
# then referred to by number; after `calls=`, the line holds that call's inclusive cost.
CALLGRIND_OUT = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -m bench.instructions --forks users-api get
part: 1

positions: line
events: Ir
summary: 1500

ob=(1) /usr/bin/python3.12
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 200
cfn=(2) 0x000000000547c7bc
calls=3 0
12 1000
fn=(2)
0 10
cfn=(1)
calls=3 10
+2 990
fn=(3) 0x000000000547c7bc'2
0 5

totals: 1500
"""


def test_totals_reads_the_instruction_count_of_a_callgrind_file() -> None:
    assert instructions.totals(CALLGRIND_OUT) == 1500
    # Older files carry only summary:
    assert instructions.totals("events: Ir\nsummary: 987654321\n") == 987654321


def test_totals_refuses_a_file_without_a_count() -> None:
    with pytest.raises(ValueError, match="no totals"):
        instructions.totals("events: Ir\n")


def test_per_request_divides_the_difference_by_the_extra_requests() -> None:
    assert instructions.per_request(4_031_011_620, 4_917_936_496) == pytest.approx(2_217_312.19)
    assert instructions.per_request(100, 300, extra=4) == 50
    with pytest.raises(ValueError, match="not more than"):
        instructions.per_request(300, 300)


def test_every_contender_served_by_make_bench_is_counted_too() -> None:
    assert list(instructions.APPS) == list(run.CONTENDERS)
    assert set(run.PEERS) == set(run.CONTENDERS) - {"users-api", "users-api-limits"}


def test_inclusive_costs_add_a_functions_own_lines_and_its_calls() -> None:
    costs = profile.inclusive_costs(CALLGRIND_OUT)
    assert costs["_PyEval_EvalFrameDefault"] == 200 + 1000
    assert costs["0x000000000547c7bc"] == 10 + 990
    assert costs["0x000000000547c7bc'2"] == 5


def test_python_functions_are_named_from_each_runs_perf_map() -> None:
    # The two children made the trampoline of get_user at different addresses.
    base_names = profile.perf_names([f"547c7bc b py::get_user:{run.ROOT}/handlers/users.py\n"])
    more_names = profile.perf_names([f"aed20c6 b py::get_user:{run.ROOT}/handlers/users.py\n"])
    base = {"0x000000000547c7bc": 1000, "0x000000000547c7bc'2": 5, "main": 10}
    more = {"0x000000000aed20c6": 1800, "0x000000000aed20c6'2": 9, "main": 20}
    functions = [
        profile.python_functions(base, base_names),
        profile.python_functions(more, more_names),
    ]
    assert functions[0] == {"handlers/users.py:get_user": 1000}
    assert profile.per_request(*functions, extra=4) == {"handlers/users.py:get_user": 200}


def test_the_ratio_table_puts_users_api_against_each_peer() -> None:
    def cell(contender: str, rps: float, instructions: float | None) -> dict[str, object]:
        return {
            "database": "sqlite",
            "workload": "get",
            "contender": contender,
            "rps": rps,
            "instructions": instructions,
        }

    cells = [
        cell("users-api", 1000, 2e6),
        cell("connexion2", 500, 5e6),
        cell("fastapi", 2000, None),
    ]
    rows = run.ratio_table(cells, ["connexion2", "fastapi"])
    assert rows[-1] == "| sqlite | GET /v1/users/{id} | 2.00x (2.50x) | 0.50x |"


@pytest.mark.parametrize("contender", ["connexion3_app", "connexion2_app"])
def test_the_connexion_contenders_have_a_function_for_every_operation(contender, tmp_path) -> None:  # type: ignore[no-untyped-def]
    python = instructions.CONNEXION2_PYTHON if contender == "connexion2_app" else sys.executable
    if not Path(python).exists():
        pytest.skip("make bench builds the connexion 2 environment")
    # Both resolve every operationId of openapi.yaml when the app is built.
    result = subprocess.run(
        [str(python), "-c", f"import bench.contenders.{contender}"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path}/u.db", "API_KEYS": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
