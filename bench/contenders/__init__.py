"""The baselines users-api is measured against, written for the benchmark.

Every contender does the same work on the same database through the same `storage`
package (SQLAlchemy Core, the same pool and queries) and answers with the same JSON
(users-api's own serializer and If-Match parsing), so what the benchmark compares is
the web stack around it. None has a contract, request ids, logs or metrics; that cost
is what users-api pays for its features.
"""

import storage
from handlers.etags import if_match_versions as if_match
from handlers.users import as_json
from settings import Settings

__all__ = ["as_json", "if_match", "user_store"]


def user_store() -> storage.UserStore:
    # The pool users-api gets from the same environment (bench/run.py sets it).
    settings = Settings.from_env()
    engine = storage.make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        wait=settings.db_timeout,
    )
    return storage.UserStore(engine)
