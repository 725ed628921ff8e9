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


class IfMatchRequired(Exception):
    """A write came without If-Match where the service requires one (RFC 6585: 428)."""


def etag(user: User) -> str:
    return f'"{user.version}"'


def if_match_versions(header: str | None) -> Collection[int] | None:
    """Versions If-Match allows; None when any version will do (no header, or `*`).

    If-Match uses the strong comparison, so weak tags match nothing.
    """
    if header is None or header.strip() == "*":
        return None
    return _named_versions(header, weak_too=False)


def if_none_match_versions(header: str) -> Collection[int] | None:
    """Versions If-None-Match names (weak comparison); None for `*`, which names them all."""
    if header.strip() == "*":
        return None
    return _named_versions(header, weak_too=True)


def _named_versions(header: str, *, weak_too: bool) -> set[int]:
    tags = _ENTITY_TAG.findall(header)
    versions = (_version(value) for weak, value in tags if weak_too or not weak)
    return {version for version in versions if version is not None}


def _version(value: str) -> int | None:
    if not _VERSION.match(value):
        return None
    version = int(value)
    return version if version <= _MAX_VERSION else None


def none_match(header: str | None, user: User) -> bool:
    """True when If-None-Match names the user's current version (or is `*`)."""
    if header is None:
        return False
    named = if_none_match_versions(header)
    return named is None or user.version in named


def if_match_holds(header: str | None, user: User) -> bool:
    """For a read: does If-Match allow the user's current version?"""
    versions = if_match_versions(header)
    return versions is None or user.version in versions


def write_preconditions(
    if_match: str | None, if_none_match: str | None, *, require_if_match: bool
) -> tuple[Collection[int] | None, Collection[int]]:
    """The versions a write may change (None: any) and those it must not (RFC 9110, 13.2).

    `*` in If-None-Match means "only if it does not exist", which no write of an
    existing user can satisfy: no version may be changed. With `require_if_match`, a
    write without If-Match raises IfMatchRequired (REQUIRE_IF_MATCH).
    """
    if require_if_match and if_match is None:
        raise IfMatchRequired
    versions = if_match_versions(if_match)
    if if_none_match is None:
        return versions, ()
    named = if_none_match_versions(if_none_match)
    return (set(), ()) if named is None else (versions, named)
