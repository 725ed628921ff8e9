"""API keys from the command line.

python -m serving.keys new NAME ROLE     # print a new key and its API_KEYS entry
python -m serving.keys dev               # the checkout's development key (make run)
"""

import os
import sys
from pathlib import Path

from handlers.auth import KeyConfigError, new_key

DEV_KEY_FILE = Path(".dev-api-key")


def print_new(name: str, role: str) -> int:
    key, entry = new_key(name, role)
    print(f"key:      {key}")
    print(f"API_KEYS: {entry}")
    print("Give the key to its user; put only the API_KEYS entry in the service's config.")
    return 0


def dev_entry() -> int:
    """Print the API_KEYS entry of this checkout's dev key, creating it on first use.

    stdout carries only the entry (make run reads it); the key goes to stderr, once.
    """
    if DEV_KEY_FILE.exists():
        key, entry = DEV_KEY_FILE.read_text(encoding="utf-8").split("\n")[:2]
        print(
            f"users-api: API_KEYS not set; using the development key in {DEV_KEY_FILE}",
            file=sys.stderr,
        )
    else:
        key, entry = new_key("dev", "write")
        DEV_KEY_FILE.touch(mode=0o600)
        DEV_KEY_FILE.write_text(f"{key}\n{entry}\n", encoding="utf-8")
        banner = "=" * 72
        print(
            f"{banner}\nWARNING: API_KEYS is not set. Created a DEVELOPMENT key (role write),"
            f" kept in {DEV_KEY_FILE} for later runs of this checkout:\n\n    X-API-Key: {key}\n\n"
            f"Never use it in production: create real keys with `make key`.\n{banner}",
            file=sys.stderr,
        )
    print(entry)
    return 0


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["new"] and len(argv) == 3:
            return print_new(argv[1], argv[2])
        if argv == ["dev"]:
            return dev_entry()
    except KeyConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main(sys.argv[1:]))
