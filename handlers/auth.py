"""API keys with roles, checked by connexion's security layer (x-apikeyInfoFunc).

Keys are configured as `name:role:sha256hex`: the service only ever holds SHA-256
digests, compares them in constant time, and logs the key's name, never the key.
"""

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import structlog
from connexion.exceptions import Forbidden
from connexion.security import ApiKeySecurityHandler

log = structlog.get_logger(__name__)

# What each role may do: `write` includes everything `read` may.
ROLE_GRANTS = {"read": frozenset({"read"}), "write": frozenset({"read", "write"})}


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
        try:
            digest = bytes.fromhex(hex_digest)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise KeyConfigError(f"API_KEYS entry {name!r} needs a 64-hex-digit SHA-256 digest")
        return cls(name, role, digest)


class Keyring:
    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self.keys = keys

    def find(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = None
        for key in self.keys:  # no early exit: the time taken says nothing about which key
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


# One keyring per process: connexion calls the security function with the key only, and
# a process serves one app. create_app installs it.
_keyring = Keyring(())


def install(keys: tuple[ApiKey, ...]) -> None:
    global _keyring
    _keyring = Keyring(keys)


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
        needed = sorted(missing)[0]
        raise Forbidden(
            detail=f"Key {api_key.name!r} has role {api_key.role!r}; this needs {needed!r}."
        )
    return {"sub": api_key.name, "scope": sorted(granted)}


class ApiKeyHandler(ApiKeySecurityHandler):  # type: ignore[misc]
    """connexion's API-key check, without inspecting api_key_info's signature per request."""

    @staticmethod
    @cache
    def _accepts_kwarg(func: Callable[..., Any], keyword: str) -> bool:
        return bool(ApiKeySecurityHandler._accepts_kwarg(func, keyword))


def allows(presented: str | None, role: str) -> bool:
    """For endpoints outside the contract (/metrics): does this key carry the role?"""
    api_key = _keyring.find(presented) if presented else None
    return api_key is not None and role in ROLE_GRANTS[api_key.role]


def new_key(name: str, role: str) -> tuple[str, str]:
    """A fresh random key (32 bytes of entropy) and its API_KEYS entry."""
    if role not in ROLE_GRANTS:
        raise KeyConfigError(f"role must be read or write, not {role!r}")
    if not name or ":" in name or "," in name:
        raise KeyConfigError("a key name must be non-empty, without ':' or ','")
    key = secrets.token_urlsafe(32)
    return key, f"{name}:{role}:{hashlib.sha256(key.encode()).hexdigest()}"
