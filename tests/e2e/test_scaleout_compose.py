"""compose.yaml has the shape of the topology test, and its parts refer to each other.

No container engine runs here (and the docker CLI has no compose plugin), so this reads
the file with PyYAML, checks every reference, and has Debian's HAProxy check the
configuration compose mounts.
"""

import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import ROOT

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_one_published_port_and_it_is_the_load_balancer():
    published = {name: spec["ports"] for name, spec in SERVICES.items() if "ports" in spec}
    assert published == {"lb": ["8080:8080"]}


def test_several_replicas_after_a_one_shot_migration():
    api, migrate = SERVICES["api"], SERVICES["migrate"]
    assert api["deploy"]["replicas"] >= 2
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["command"] == ["python", "-m", "storage", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["environment"]["DATABASE_URL"] == api["environment"]["DATABASE_URL"]


def test_every_reference_names_something_defined():
    for name, spec in SERVICES.items():
        for needed in spec.get("depends_on", {}):
            assert needed in SERVICES, f"{name} depends on unknown {needed}"
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"


def test_the_database_url_matches_the_database_service():
    db = SERVICES["db"]["environment"]
    url = SERVICES["api"]["environment"]["DATABASE_URL"]
    user, password, host, database = re.fullmatch(
        r"postgresql://([^:]+):([^@]+)@([^:/]+):5432/(\w+)", url
    ).groups()
    assert (user, password, database) == (
        db["POSTGRES_USER"],
        db["POSTGRES_PASSWORD"],
        db["POSTGRES_DB"],
    )
    assert host == "db"


def test_haproxy_balances_the_api_service_on_its_port_and_checks_readiness():
    mount = next(v for v in SERVICES["lb"]["volumes"] if "haproxy.cfg" in v)
    config_path = ROOT / mount.split(":")[0]
    config = config_path.read_text()
    assert re.search(r"^\s*server-template \w+ \d+ api:8080 check", config, re.M)
    assert "option httpchk GET /readyz" in config
    assert "bind :8080" in config
    assert SERVICES["api"]["expose"] == ["8080"]
    if not shutil.which("haproxy"):
        pytest.skip("Debian's haproxy is not installed (.ci/run installs it)")
    subprocess.run(["haproxy", "-c", "-q", "-f", str(config_path)], check=True)
