"""Entity tags and the conditional headers of RFC 9110, section 13."""

import re
from collections.abc import Collection

from storage import User

# One entity-tag in a list: optional weakness prefix and a quoted opaque value.
_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')
# A version the service could have issued: a positive int64, in ASCII digits. Anything
# else (5000 digits, past what the database stores) names no version and matches nothing.
_VERSION = re.compile(r"[1-9][0-9]{0,18}\Z")
_MAX_VERSION = 2**63 - 1


def etag(user: User) -> str:
    return f'"{user.version}"'


def if_match_versions(header: str | None) -> Collection[int] | None:
    """Versions If-Match allows; None when any version will do (no header, or `*`).

    If-Match uses the strong comparison, so weak tags match nothing.
    """
    if header is None or header.strip() == "*":
        return None
    versions = (_version(value) for weak, value in _ENTITY_TAG.findall(header) if not weak)
    return {version for version in versions if version is not None}


def _version(value: str) -> int | None:
    if not _VERSION.match(value):
        return None
    version = int(value)
    return version if version <= _MAX_VERSION else None


def none_match(header: str | None, user: User) -> bool:
    """True when If-None-Match names the user's current version (weak comparison)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    current = str(user.version)
    return any(value == current for _weak, value in _ENTITY_TAG.findall(header))
