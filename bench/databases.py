"""Seeded databases for the benchmark: one template, a fresh copy for each contender run."""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

import storage
from storage.tables import users

SEED_USERS = 10_000
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DATABASES = {"sqlite": "a SQLite file", "postgres": "the server at BENCH_POSTGRES_URL"}

# fresh_copy(name) -> (database URL, first seeded id, last seeded id)
FreshCopy = Callable[[str], tuple[str, int, int]]


@contextmanager
def seeded(database: str) -> Iterator[FreshCopy | None]:
    """Seed one template database; yield a function that makes a fresh copy of it, or
    None when there is no PostgreSQL server to use."""
    if database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="users-bench-") as directory:
            template = Path(directory) / "template.db"
            ids = _seed(f"sqlite:///{template}")

            def sqlite_copy(name: str) -> tuple[str, int, int]:
                copy = Path(directory) / f"{name}.db"
                shutil.copyfile(template, copy)
                return f"sqlite:///{copy}", *ids

            yield sqlite_copy
        return
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # any failure to connect means: no PostgreSQL here
        yield None
        return
    made = ["users_bench_template"]
    _drop(admin, made)
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE users_bench_template"))
    base = make_url(POSTGRES_URL)
    ids = _seed(base.set(database="users_bench_template").render_as_string(hide_password=False))

    def postgres_copy(name: str) -> tuple[str, int, int]:
        database_name = f"users_bench_{name.replace('-', '_')}"
        made.append(database_name)
        _drop(admin, [database_name])
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {database_name} TEMPLATE users_bench_template"))
        return base.set(database=database_name).render_as_string(hide_password=False), *ids

    try:
        yield postgres_copy
    finally:
        _drop(admin, made)
        admin.dispose()


def _drop(admin: Any, names: list[str]) -> None:
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _seed(url: str) -> tuple[int, int]:
    engine = storage.make_engine(url)
    storage.upgrade(engine)
    engine.dispose()
    return add_users(url, SEED_USERS)


def add_users(url: str, count: int) -> tuple[int, int]:
    """Insert `count` users at version 1; return the first and last new id."""
    engine = storage.make_engine(url)
    now = datetime.now(UTC)
    rows = [
        {"name": f"user {n}", "age": n % 120, "version": 1, "created_at": now, "updated_at": now}
        for n in range(count)
    ]
    with engine.begin() as conn:
        before = conn.execute(select(func.max(users.c.id))).scalar_one() or 0
        conn.execute(insert(users), rows)
        last = conn.execute(select(func.max(users.c.id))).scalar_one()
    engine.dispose()
    return before + 1, int(last)
