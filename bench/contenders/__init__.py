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
from settings import Settings

__all__ = ["as_json", "if_match", "user_store"]


def user_store() -> storage.UserStore:
    # The pool users-api gets from its defaults, so no contender has more connections.
    defaults = Settings()
    engine = storage.make_engine(
        os.environ["DATABASE_URL"],
        pool_size=defaults.db_pool_size,
        max_overflow=defaults.db_max_overflow,
        wait=defaults.db_timeout,
    )
    return storage.UserStore(engine)
