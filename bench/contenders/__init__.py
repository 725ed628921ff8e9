"""The baselines users-api is measured against, written for the benchmark.

Every contender does the same work on the same database through the same `storage`
package (SQLAlchemy Core, the same pool and queries) and answers with the same JSON, so
what the benchmark compares is the web stack around it. None has a contract, request
ids, logs or metrics; that cost is what users-api pays for its features.
"""

import os
from typing import Any

import storage
from storage import User


def user_store() -> storage.UserStore:
    engine = storage.make_engine(os.environ["DATABASE_URL"], pool_size=10, max_overflow=20)
    return storage.UserStore(engine)


def as_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "age": user.age,
        "created_at": user.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": user.updated_at.isoformat().replace("+00:00", "Z"),
    }


def if_match(header: str | None) -> set[int] | None:
    """The versions a `If-Match: "N"` header allows (None: no header)."""
    if header is None:
        return None
    return {int(tag.strip().strip('"')) for tag in header.split(",") if tag.strip('" ').isdigit()}
