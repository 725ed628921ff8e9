"""The benchmark helpers the README quotes (`make bench` itself is measured, not tested)."""

import subprocess
import sys
from pathlib import Path

from bench import layers

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
