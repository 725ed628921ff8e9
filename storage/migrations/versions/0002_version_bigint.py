"""Widen users.version to 64 bits on PostgreSQL.

As int4 it ended at 2^31 - 1: the next change of that user failed ("integer out of
range", a 500), and so did any write whose If-Match named a version past it, which
etags.py accepts up to int64's largest. SQLite's INTEGER is 64 bits already.

On PostgreSQL this rewrites the table under an exclusive lock. Requests that reach the
table meanwhile wait up to DB_TIMEOUT for it, then get a 503; on a big table run it from
the migration Job while the service is quiet. The previous release works on the wider
column (its statements cast to INTEGER only the values they send), so a rolling update
needs no other step.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "users",
            "version",
            type_=sa.BigInteger(),
            existing_type=sa.Integer(),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Fails if a version is past 2^31 - 1: such a user cannot go back to int4.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "users",
            "version",
            type_=sa.Integer(),
            existing_type=sa.BigInteger(),
            existing_nullable=False,
        )
