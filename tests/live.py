"""The real thing over TCP: gunicorn with gevent workers, started from gunicorn.conf.py."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.keys import API_KEYS, WRITE_KEY

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, key: str | None = WRITE_KEY, **kwargs: object) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.base_url, headers=headers, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def start_gunicorn(
    tmp_path: Path,
    database_url: str,
    *,
    workers: int = 2,
    api_keys: str = API_KEYS,
    **extra_env: str,
) -> LiveServer:
    """Start gunicorn exactly as deployed and wait until /healthz answers."""
    port = free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    metrics_dir = tmp_path / f"metrics-{port}"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "WEB_CONCURRENCY": str(workers),
        "LOG_FORMAT": "json",
        "VALIDATE_RESPONSES": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "API_KEYS": api_keys,
        **extra_env,
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(process, f"http://127.0.0.1:{port}", log_path, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"gunicorn did not become healthy:\n{server.log()}")
