"""The database schema as SQLAlchemy Core tables; migrations create it."""

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table

metadata = MetaData()

users = Table(
    "users",
    metadata,
    # sqlite_autoincrement: ids are never reused, so an old ETag or link can never
    # point at a different user.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("age", Integer, nullable=False),
    # 64 bits: one user changed 2^31 times must not reach the end of its versions, and
    # If-Match may name any version up to int64's largest (etags.py).
    Column("version", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)
