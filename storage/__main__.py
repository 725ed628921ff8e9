"""`python -m storage upgrade`: apply schema migrations to DATABASE_URL."""

import sys

from settings import Settings
from storage import migrate


def main(argv: list[str]) -> int:
    if argv != ["upgrade"]:
        print("usage: python -m storage upgrade", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    migrate(settings.database_url, wait=settings.db_timeout, pooler=settings.db_pooler)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
