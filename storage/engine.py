"""Engine creation: one place that knows the differences between SQLite and PostgreSQL."""

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///data/users.sqlite3"


class DatabaseURLError(ValueError):
    """DATABASE_URL names no database this service can use."""


def normalise_url(url: str) -> str:
    """Accept the URLs operators usually have (postgres://, postgresql://) and pick psycopg 3."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError as exc:
        raise DatabaseURLError(f"DATABASE_URL is not a database URL: {exc}") from None
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.render_as_string(hide_password=False)
    raise DatabaseURLError(
        f"DATABASE_URL uses {parsed.drivername!r}; use sqlite:///path or postgresql://..."
    )


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(
        url,
        hide_parameters=True,  # errors are logged: their messages must not carry user data
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,  # survive a database restart without a burst of 500s
        pool_recycle=1800,
    )


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _tune(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; busy_timeout makes a second
        # worker's writer wait for the lock instead of failing at once.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
