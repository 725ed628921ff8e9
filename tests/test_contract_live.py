"""schemathesis over the network against the service as deployed (gunicorn, gevent workers).

Every check, positive and negative data, all phases including stateful sequences along
the spec's links; deterministic and bounded in time. `make contract` runs only this;
`make fuzz` runs it with a bigger budget (CONTRACT_MAX_EXAMPLES, CONTRACT_MAX_TIME).
"""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, WRITE_KEY, start_gunicorn

pytestmark = [pytest.mark.live, pytest.mark.contract]


def test_schemathesis_finds_nothing_against_the_deployed_service(tmp_path, sqlite_url):
    server = start_gunicorn(tmp_path, sqlite_url, workers=2)
    report = tmp_path / "schemathesis"
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{server.base_url}/v1/openapi.json",
                "--checks",
                "all",
                "--mode",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                # Reproducible: the same cases every run (no seed is drawn).
                "--generation-deterministic",
                "--max-examples",
                os.environ.get("CONTRACT_MAX_EXAMPLES", "25"),
                "--max-time",
                os.environ.get("CONTRACT_MAX_TIME", "90"),
                "--workers",
                "2",
                "--report",
                "junit",
                "--report-dir",
                str(report),
            ],
            cwd=ROOT,
            env={**os.environ, "USERS_API_KEY": WRITE_KEY},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert "passed" in result.stdout
