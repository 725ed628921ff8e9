"""Replicas that start together on one empty PostgreSQL database migrate it once."""

import time

import httpx
import pytest
import sqlalchemy as sa

import storage
from tests.helpers import launch_gunicorn

pytestmark = pytest.mark.postgres

REPLICAS = 4
ROUNDS = 4


# Replicas' start-up times differ by more than a migration takes, so one round of a race
# can pass by luck (without the lock, 3 of 8 single rounds failed here): run several,
# each on a fresh database (postgres_url).
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_replicas_started_at_once_on_an_empty_database_migrate_it_once(
    tmp_path, postgres_url, round_
):
    replicas = [launch_gunicorn(tmp_path, postgres_url, workers=1) for _ in range(REPLICAS)]
    try:
        for replica in replicas:
            replica.wait_healthy(path="/readyz")
        for replica in replicas:
            with replica.client() as http:
                assert http.get("/v1").status_code == 200
        engine = storage.make_engine(postgres_url)
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        assert len(versions) == 1
    finally:
        for replica in replicas:
            replica.stop()
    for replica in replicas:
        assert replica.error_lines() == [], replica.log()


def test_a_replica_waits_for_a_migration_in_progress_longer_than_db_timeout(tmp_path, postgres_url):
    """While another process holds the migration lock (longer than DB_TIMEOUT, which
    bounds requests' lock waits, not this one), a starting replica waits, then starts."""
    engine = storage.make_engine(postgres_url)
    with engine.connect() as holder:
        holder.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": storage.MIGRATION_LOCK}
        )
        replica = launch_gunicorn(tmp_path, postgres_url, workers=1, DB_TIMEOUT="1")
        try:
            held_until = time.monotonic() + 3
            while time.monotonic() < held_until:
                assert replica.process.poll() is None, replica.log()
                with pytest.raises(httpx.TransportError):
                    httpx.get(f"{replica.base_url}/healthz", timeout=0.5)
                time.sleep(0.2)
        finally:
            holder.rollback()
        try:
            replica.wait_healthy(path="/readyz")
        finally:
            replica.stop()
    engine.dispose()
    assert replica.error_lines() == [], replica.log()
