"""API keys with roles: parsing API_KEYS, checking a presented key, making new keys.

Keys are configured as `name:role:sha256hex`: the service only ever holds SHA-256
digests, compares them in constant time, and logs the key's name, never the key.
`api_key_info` is the spec's x-apikeyInfoFunc, which connexion's security layer calls.

    python -m apikeys new NAME ROLE     # print a new key and its API_KEYS entry
    python -m apikeys dev               # the checkout's development key (make run)
"""

import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# What each role may do: `write` includes everything `read` may.
ROLE_GRANTS = {"read": frozenset({"read"}), "write": frozenset({"read", "write"})}
DEV_KEY_FILE = Path(".dev-api-key")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")  # bytes.fromhex alone also skips spaces


class KeyConfigError(ValueError):
    """API_KEYS holds an entry this service cannot use."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: str
    digest: bytes

    @classmethod
    def parse(cls, entry: str) -> "ApiKey":
        parts = entry.strip().split(":")
        if len(parts) != 3:
            raise KeyConfigError(f"API_KEYS entry {parts[0]!r} is not name:role:sha256hex")
        name, role, hex_digest = parts
        if role not in ROLE_GRANTS:
            raise KeyConfigError(f"API_KEYS entry {name!r} has role {role!r}; use read or write")
        if not SHA256_HEX.fullmatch(hex_digest):
            raise KeyConfigError(f"API_KEYS entry {name!r} needs a 64-hex-digit SHA-256 digest")
        return cls(name, role, bytes.fromhex(hex_digest))


class Keyring:
    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> "Keyring":
        return cls(ApiKey.parse(entry) for entry in entries)

    def find(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = None
        for key in self.keys:  # no early exit: the time taken says nothing about which key
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def allows(self, presented: str | None, role: str) -> bool:
        """For endpoints outside the contract (/metrics): does this key carry the role?"""
        api_key = self.find(presented) if presented else None
        return api_key is not None and role in ROLE_GRANTS[api_key.role]


# One keyring per process: connexion calls the security function with the key only, and
# a process serves one app. create_app installs it.
_keyring = Keyring(())


def install(keyring: Keyring) -> None:
    global _keyring
    _keyring = keyring


def api_key_info(key: str, required_scopes: list[str] | None = None) -> dict[str, Any] | None:
    """connexion's x-apikeyInfoFunc: None means 401; a missing role is 403."""
    api_key = _keyring.find(key)
    if api_key is None:
        log.info("api key rejected")
        return None
    granted = ROLE_GRANTS[api_key.role]
    structlog.contextvars.bind_contextvars(api_key=api_key.name)
    missing = set(required_scopes or ()) - granted
    if missing:
        # Imported here: connexion's import warns on stderr, and `python -m apikeys`
        # (what `make run` and `make key` call) needs none of it.
        from connexion.exceptions import Forbidden

        needed = sorted(missing)[0]
        raise Forbidden(
            detail=f"Key {api_key.name!r} has role {api_key.role!r}; this needs {needed!r}."
        )
    return {"sub": api_key.name, "scope": sorted(granted)}


def new_key(name: str, role: str) -> tuple[str, str]:
    """A fresh random key (32 bytes of entropy) and its API_KEYS entry."""
    if role not in ROLE_GRANTS:
        raise KeyConfigError(f"role must be read or write, not {role!r}")
    if not name or ":" in name or "," in name:
        raise KeyConfigError("a key name must be non-empty, without ':' or ','")
    key = secrets.token_urlsafe(32)
    return key, f"{name}:{role}:{hashlib.sha256(key.encode()).hexdigest()}"


def _print_new(name: str, role: str) -> int:
    key, entry = new_key(name, role)
    print(f"key:      {key}")
    print(f"API_KEYS: {entry}")
    print("Give the key to its user; put only the API_KEYS entry in the service's config.")
    return 0


def _dev_entry() -> int:
    """Print the API_KEYS entry of this checkout's dev key, creating it on first use.

    stdout carries only the entry (make run reads it); the key goes to stderr, once.
    """
    if DEV_KEY_FILE.exists():
        entry = DEV_KEY_FILE.read_text(encoding="utf-8").splitlines()[1]
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
            return _print_new(argv[1], argv[2])
        if argv == ["dev"]:
            return _dev_entry()
    except KeyConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main(sys.argv[1:]))
