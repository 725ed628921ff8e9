"""What `make install` gives users runs the service: requirements.lock alone, no dev tools.

The dev lock brings in packages the runtime lock may forget to declare (gunicorn's gevent
worker needs `packaging`, which gunicorn does not declare), so this test builds a fresh
virtualenv from requirements.lock only and serves from it.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, assert_problem, start_gunicorn


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding requirements.lock and nothing else, as the Dockerfile makes it."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--require-virtualenv", "--no-deps", "-r", str(ROOT / "requirements.lock")),
        ],
        capture_output=True,
        text=True,
    )
    if pip.returncode:
        pytest.fail(f"pip could not install requirements.lock:\n{pip.stdout}{pip.stderr}")
    return venv


def test_gunicorn_from_the_runtime_lock_alone_serves_a_create_read_delete_round_trip(
    runtime_venv: Path, tmp_path: Path, sqlite_url: str
) -> None:
    installed = subprocess.run(
        [str(runtime_venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "pytest" not in installed, "the runtime venv must not hold dev tools"

    gunicorn = str(runtime_venv / "bin" / "gunicorn")
    server = start_gunicorn(tmp_path, sqlite_url, gunicorn=(gunicorn,))
    try:
        with server.client() as http:
            created = http.post("/v1/users", json={"name": "Ada", "age": 36})
            assert created.status_code == 201, created.text
            location = created.headers["location"]
            read = http.get(location)
            assert read.status_code == 200, read.text
            assert read.json() == created.json()
            deleted = http.delete(location)
            assert deleted.status_code == 204, deleted.text
            assert_problem(http.get(location), 404)
    finally:
        assert server.stop() == 0, server.log()


def test_make_runs_development_key_comes_without_python_warnings(
    runtime_venv: Path, tmp_path: Path
) -> None:
    # `make run` asks `python -m apikeys dev` for a key before gunicorn starts; what it
    # prints is the banner for the user, not a library's deprecation notice.
    made = subprocess.run(
        [str(runtime_venv / "bin" / "python"), "-m", "apikeys", "dev"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert made.stdout.startswith("dev:write:"), made.stdout
    assert "Warning" not in made.stderr, made.stderr
    assert "X-API-Key: " in made.stderr
