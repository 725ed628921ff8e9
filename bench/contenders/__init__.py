"""The baselines users-api is measured against, written for the benchmark.

Every contender does the same work on the same database through the same `storage`
package (SQLAlchemy Core, the same pool and queries) and answers with the same JSON
(users-api's own serializer and If-Match parsing), so what the benchmark compares is
the web stack around it. None has a contract, request ids, logs or metrics; that cost
is what users-api pays for its features.
"""

import os

import storage
from handlers.etags import if_match_versions as if_match
from handlers.users import as_json

__all__ = ["as_json", "if_match", "user_store"]


def user_store() -> storage.UserStore:
    engine = storage.make_engine(os.environ["DATABASE_URL"], pool_size=10, max_overflow=20)
    return storage.UserStore(engine)
