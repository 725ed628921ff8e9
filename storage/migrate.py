"""Schema migrations with Alembic, driven from code so no alembic.ini is needed."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

_SCRIPTS = Path(__file__).with_name("migrations")


class SchemaOutOfDate(RuntimeError):
    """The database is not at the newest migration; run `make migrate`."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is there already."""
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def check_current(engine: Engine) -> None:
    """Fail fast at start-up rather than answer 500s from a stale schema."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at revision {current}, the code needs {head}: run `make migrate`"
        )
