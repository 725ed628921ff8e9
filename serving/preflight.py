"""`python -m serving.preflight`: migrate, then build the app once, before any worker starts.

gunicorn's master runs this in a child process (so the master never imports the app or
opens sockets before workers fork and gevent patches them). A bad DATABASE_URL, an
unreachable database or a malformed spec ends start-up with one clear line, instead of
workers that crash and restart forever.
"""

import sys

import logging_ext.setup  # noqa: F401  first: its warning filters apply to the imports below
import storage
from settings import Settings


def main() -> int:
    try:
        settings = Settings.from_env()
        storage.migrate(settings.database_url, wait=settings.db_timeout, pooler=settings.db_pooler)
        from app import create_app

        create_app(settings).app.extensions["user_store"].engine.dispose()
    except Exception as exc:  # start-up must end in one readable line, whatever failed
        first_line = (str(exc).strip().splitlines() or [""])[0]
        print(f"users-api cannot start: {type(exc).__name__}: {first_line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
