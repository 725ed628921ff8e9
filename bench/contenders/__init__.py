"""The contenders users-api is measured against, written for the benchmark.

Every contender does the same work on the same database through the same `storage`
package (SQLAlchemy Core, the same pool and queries) and answers with the same JSON
(users-api's own serializer and ETag parsing), so what the benchmark compares is the
web stack around it. The references (plain Flask, raw WSGI, minimal FastAPI) have no
contract, request ids, logs or metrics; the peers (connexion 2, stock connexion 3,
feature-equal FastAPI) have what `features` lists.

Nothing here imports connexion or `settings`: the connexion 2 contender imports this
package from an environment of its own, where connexion 2 replaces connexion 3.
"""

import os
from typing import Any

import storage
from etags import etag, if_match_holds, none_match
from etags import if_match_versions as if_match
from handlers.users import as_json

__all__ = ["as_json", "etag", "if_match", "if_match_holds", "none_match", "user_store"]


def user_store() -> storage.UserStore:
    """The store users-api builds from the same environment (bench/run.py sets it).

    Unset pool variables keep make_engine's defaults, which are also settings.Settings'.
    """
    env = os.environ
    pool: dict[str, Any] = {}
    if env.get("DB_POOL_SIZE"):
        pool["pool_size"] = int(env["DB_POOL_SIZE"])
    if env.get("DB_MAX_OVERFLOW"):
        pool["max_overflow"] = int(env["DB_MAX_OVERFLOW"])
    if env.get("DB_TIMEOUT"):
        pool["wait"] = float(env["DB_TIMEOUT"])
    return storage.UserStore(storage.make_engine(env["DATABASE_URL"], **pool))
