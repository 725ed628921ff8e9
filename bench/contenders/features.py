"""users-api's per-request features, written plainly for the peers that match them.

API keys as in API_KEYS (`name:role:sha256hex`; only digests held, compared in constant
time, `write` includes `read`), request ids (X-Request-ID kept when tame, else a uuid4)
and one JSON access line per request through structlog, on stdout. The connexion and
FastAPI contenders call these; each framework raises its own 401/403.
"""

import hashlib
import hmac
import os
import re
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

GRANTS = {"read": frozenset({"read"}), "write": frozenset({"read", "write"})}
_TAME_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = structlog.get_logger("access")


@dataclass(frozen=True)
class Key:
    name: str
    role: str
    digest: bytes


def load_keys(entries: str | None = None) -> tuple[Key, ...]:
    entries = os.environ.get("API_KEYS", "") if entries is None else entries
    keys = []
    for entry in filter(None, (e.strip() for e in entries.split(","))):
        name, role, hex_digest = entry.split(":")
        keys.append(Key(name, role, bytes.fromhex(hex_digest)))
    return tuple(keys)


def find_key(keys: tuple[Key, ...], presented: str) -> Key | None:
    digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    found = None
    for key in keys:  # no early exit, as in users-api
        if hmac.compare_digest(digest, key.digest):
            found = key
    return found


def request_id(incoming: str | None) -> str:
    if incoming is not None and _TAME_ID.fullmatch(incoming):
        return incoming
    return str(uuid.uuid4())


def configure_logging() -> None:
    """JSON lines on stdout, request-scoped values merged in (structlog's own advice)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def log_access(**fields: Any) -> None:
    access_log.info("request", **fields)
