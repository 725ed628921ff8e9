"""The container image as shipped: it builds, starts, serves, and runs unprivileged.

Where `podman run` works, the image runs as a container. Where it cannot (on VMs where
neither crun nor runc may set rlimits), the test serves from the image's own filesystem:
a container's root mounted by podman, entered with chroot as the image's USER, with its
ENV, WORKDIR and CMD. Either way the root is read-only, as deploy/kubernetes runs it,
with /tmp and the image's volume writable. The image is built by `make image`, as users
build it.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import API_KEYS, ROOT, LiveServer, assert_problem, free_port, report

pytestmark = pytest.mark.image

PODMAN = shlex.split(os.environ.get("PODMAN", "podman --storage-driver vfs"))
# Kept between runs so the next build reuses the dependency layers (pip is the slow part).
BUILD_CACHE = "localhost/users-api:build-cache"
TEST_TAG = "localhost/users-api:test"  # + the pid of the run that built it
# Measured at about 340 MB (Debian slim, Python, the venv); a leak of build tools or
# caches would show as a jump.
MAX_IMAGE_BYTES = 450_000_000


def podman(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("check", True)
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, **kwargs)


def make_image(tag: str, *flags: str) -> str:
    """`make image` as users run it; what went wrong, or "" when it built."""
    settings = {"IMAGE": tag, "PODMAN": shlex.join(PODMAN), "BUILD_FLAGS": shlex.join(flags)}
    built = subprocess.run(
        ["make", "--no-print-directory", "image", *(f"{k}={v}" for k, v in settings.items())],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return f"{built.stdout[-8000:]}{built.stderr[-8000:]}" if built.returncode else ""


def remove_test_images() -> None:
    """This run's image, any a killed run left, and every layer only they used: vfs keeps
    a full copy of each (about 4 GB a build here)."""
    tags = podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout
    for tag in tags.split():
        if tag.startswith(f"{TEST_TAG}-"):
            podman("rmi", "--force", tag, check=False)
    podman("image", "prune", "--force", check=False)


@dataclass
class Image:
    tag: str
    config: dict[str, Any]
    size: int
    healthcheck: dict[str, Any]

    @property
    def env(self) -> dict[str, str]:
        return dict(entry.split("=", 1) for entry in self.config["Env"])


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> Iterator[Image]:
    if shutil.which(PODMAN[0]) is None:
        pytest.skip("needs podman")
    tag = f"{TEST_TAG}-{os.getpid()}"
    try:
        started = time.monotonic()
        failed = make_image(tag)
        if failed:
            pytest.fail(f"make image failed:\n{failed}")
        report(request, "image", f"make image took {time.monotonic() - started:.0f} s")
        (inspected,) = json.loads(podman("image", "inspect", tag).stdout)
        # podman reports HEALTHCHECK beside Config, docker inside it.
        health = inspected.get("Healthcheck") or inspected["Config"].get("Healthcheck") or {}
        yield Image(tag, inspected["Config"], int(inspected["Size"]), health)
    finally:
        # Keep the base and the dependency layers (tagged, so the next build starts
        # from them), drop the rest of this build, whatever happened to it.
        make_image(BUILD_CACHE, "--target=build")
        remove_test_images()


@dataclass
class Served:
    """The image's service, started one way or the other."""

    server: LiveServer
    pid: int  # gunicorn's master, as seen from here
    python: list[str]  # runs the image's python (as its user), then the arguments
    python_env: dict[str, str] | None = None  # the environment `python` needs here


def podman_run_works(image: Image) -> bool:
    return podman("run", "--rm", image.tag, "true", check=False, timeout=120).returncode == 0


@contextmanager
def run_as_container(image: Image, tmp_path: Path, env: dict[str, str]) -> Iterator[Served]:
    name = f"users-api-test-{os.getpid()}"
    args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    log_path = tmp_path / "container.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *PODMAN,
                "run",
                "--rm",
                "--name",
                name,
                "--network=host",
                "--read-only",
                "--tmpfs=/tmp",
                *args,
                image.tag,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(process, f"http://127.0.0.1:{env['PORT']}", log_path)
    try:
        server.wait_healthy()
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
        yield Served(server, pid, [*PODMAN, "run", "--rm", image.tag, "python"])
    finally:
        podman("stop", "--time", "30", name, check=False)
        server.stop()


def mount(mounted: list[Path], *args: str | Path) -> None:
    """mount ARGS; the mount point (the last argument) joins `mounted`, to undo."""
    subprocess.run(["mount", *map(str, args)], check=True)
    mounted.append(Path(args[-1]))


@contextmanager
def run_from_rootfs(image: Image, tmp_path: Path, env: dict[str, str]) -> Iterator[Served]:
    if os.geteuid() != 0:
        pytest.skip("serving from the image's filesystem needs root (chroot, mount)")
    container = podman("create", image.tag).stdout.strip()
    mounted: list[Path] = []
    try:
        rootfs = Path(podman("mount", container).stdout.strip())
        user = image.config["User"]
        uid, gid = user.split(":")
        # As deploy/kubernetes runs it: a read-only root, with only /tmp and the image's
        # volume (the SQLite data) writable.
        mount(mounted, "--bind", rootfs, rootfs)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(rootfs)], check=True)
        mount(mounted, "-t", "tmpfs", "-o", "mode=1777", "tmpfs", rootfs / "tmp")
        for volume in image.config.get("Volumes") or {}:
            owned = f"uid={uid},gid={gid},mode=0700"
            mount(mounted, "-t", "tmpfs", "-o", owned, "tmpfs", rootfs / volume.strip("/"))
        mount(mounted, "-t", "proc", "proc", rootfs / "proc")
        mount(mounted, "--bind", "/dev", rootfs / "dev")
        enter = ["chroot", f"--userspec={user}", f"--groups={gid}", str(rootfs)]
        enter += ["/usr/bin/env", f"--chdir={image.config['WorkingDir']}"]
        log_path = tmp_path / "rootfs.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*enter, *image.config["Cmd"]], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        server = LiveServer(process, f"http://127.0.0.1:{env['PORT']}", log_path, env)
        try:
            server.wait_healthy()
            yield Served(server, process.pid, [*enter, "python"], env)
        finally:
            assert server.stop() == 0, server.log()
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "--lazy", str(target)], check=False)
        podman("umount", container, check=False)
        podman("rm", "--force", "--volumes", container, check=False)


@pytest.fixture(scope="module")
def served(
    image: Image, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Served]:
    env = {**image.env, "API_KEYS": API_KEYS, "PORT": str(free_port()), "WEB_CONCURRENCY": "2"}
    tmp_path = tmp_path_factory.mktemp("image")
    start = run_as_container if podman_run_works(image) else run_from_rootfs
    report(request, "image", f"started with {start.__name__}")
    with start(image, tmp_path, env) as served:
        yield served


def test_the_image_answers_its_health_check(served: Served) -> None:
    with served.server.client(key=None) as http:
        assert http.get("/healthz").status_code == 200


def test_the_images_own_health_check_passes(served: Served, image: Image) -> None:
    # HEALTHCHECK survives only in the docker format (make image: --format docker).
    test = image.healthcheck.get("Test", [])
    assert test[:2] == ["CMD", "python"], image.healthcheck
    probe = subprocess.run(
        [*served.python, *test[2:]],
        env=served.python_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr


def test_the_image_serves_a_create_read_update_delete_round_trip(served: Served) -> None:
    with served.server.client() as http:
        created = http.post("/v1/users", json={"name": "Ada", "age": 36})
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert http.get(location).json() == created.json()
        patch = {"content-type": "application/merge-patch+json"}
        updated = http.patch(location, json={"age": 37}, headers=patch)
        assert updated.status_code == 200, updated.text
        assert updated.json()["age"] == 37
        assert http.delete(location).status_code == 204
        assert_problem(http.get(location), 404)


def uids(pid: int) -> set[str]:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    (line,) = (line for line in status.splitlines() if line.startswith("Uid:"))
    return set(line.split()[1:])


def test_the_service_runs_as_the_images_unprivileged_user(served: Served, image: Image) -> None:
    uid = image.config["User"].split(":")[0]
    assert uid not in ("", "0", "root")
    workers = Path(f"/proc/{served.pid}/task/{served.pid}/children").read_text().split()
    assert workers, "gunicorn has no workers"
    for pid in [served.pid, *map(int, workers)]:
        assert uids(pid) == {uid}, f"process {pid} runs as {uids(pid)}"


def test_the_service_runs_on_a_read_only_root(served: Served) -> None:
    # What it served from above: only /tmp and the data volume take writes.
    write = "import sys; open(sys.argv[1], 'w').write('x')"
    for path, writable in (("/app/probe", False), ("/tmp/probe", True)):
        probe = subprocess.run(
            [*served.python, "-c", write, path],
            env=served.python_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (probe.returncode == 0) == writable, (path, probe.stderr)
        if not writable:
            assert "Read-only file system" in probe.stderr


def test_the_image_holds_no_test_tools(served: Served) -> None:
    probe = subprocess.run(
        [*served.python, "-c", "import pytest"],
        env=served.python_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0
    assert "No module named 'pytest'" in probe.stderr


def test_the_image_stays_small(image: Image, request: pytest.FixtureRequest) -> None:
    report(request, "image", f"size {image.size / 1e6:.0f} MB")
    assert image.size < MAX_IMAGE_BYTES


def test_the_container_stops_cleanly_on_sigterm(served: Served) -> None:
    """Last: stopping is what a platform does on every deploy."""
    served.server.process.send_signal(signal.SIGTERM)
    assert served.server.process.wait(40) == 0, served.server.log()
