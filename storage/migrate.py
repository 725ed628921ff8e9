"""Schema migrations with Alembic, driven from code so no alembic.ini is needed."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from storage.engine import make_engine

_SCRIPTS = Path(__file__).with_name("migrations")

# PostgreSQL advisory lock key held while migrating (any fixed bigint; this one spells
# "usersapi" in ASCII). Transaction-scoped, so it also works behind a transaction pooler.
MIGRATION_LOCK = 0x7573657273617069
# How long a starting replica waits for another one's migration before giving up. Long:
# a migration may rewrite a big table; requests never wait on this lock.
MIGRATION_LOCK_WAIT = 300.0


class SchemaOutOfDate(RuntimeError):
    """The database is not at the newest migration; run `make migrate`."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def upgrade(engine: Engine, *, lock_wait: float = MIGRATION_LOCK_WAIT) -> None:
    """Bring the schema to the newest revision; a no-op when it is there already.

    Replicas that start together each call this: on PostgreSQL the first takes an
    advisory lock and migrates, the others wait for its COMMIT, then find the schema
    at head and do nothing. (SQLite has no such lock: one host, one gunicorn, whose
    preflight migrates before any worker starts; replicas need PostgreSQL.)
    """
    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            _lock_for_migration(conn, lock_wait)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _lock_for_migration(conn: Connection, wait: float) -> None:
    """Wait up to `wait` seconds for the migration lock, which COMMIT releases.

    The connection's lock_timeout (DB_TIMEOUT, meant for requests) is lifted for this
    one wait, then put back so the migration's own DDL still gives up on a busy table.
    Its statement_timeout (DB_TIMEOUT too) is lifted for the whole migration: the wait,
    and DDL that rewrites a large table, may take longer than any request should.
    """
    conn.execute(text("SELECT set_config('statement_timeout', '0', true)"))
    previous = conn.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    conn.execute(
        text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": f"{int(wait * 1000)}ms"}
    )
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    conn.execute(text("SELECT set_config('lock_timeout', :previous, true)"), {"previous": previous})


def check_current(engine: Engine) -> None:
    """Fail fast at start-up rather than answer 500s from a stale schema."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at revision {current}, the code needs {head}: run `make migrate`"
        )


def migrate(url: str, *, wait: float, pooler: str) -> None:
    """Bring the database at `url` to the newest revision (`make migrate`, start-up, tests)."""
    engine = make_engine(url, wait=wait, pooler=pooler)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
