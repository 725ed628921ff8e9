"""Configuration, read from the environment in one place, with safe defaults."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.auth import ApiKey
from storage import DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Per worker. Under gevent one worker holds many requests at once, so the pool,
    # not the worker count, bounds how many talk to the database together.
    # Keep workers x (pool + overflow) below the server's max_connections (PostgreSQL's
    # default is 100; 5 workers x 10 = 50).
    db_pool_size: int = 5
    db_max_overflow: int = 5
    # Seconds a request waits for a free connection or another writer's lock; then 503.
    db_timeout: float = 5.0
    # Checks every response against the spec: on in tests, off in production (it costs).
    validate_responses: bool = False
    log_level: str = "INFO"
    # json | console; None picks JSON unless stdout is a terminal.
    log_format: str | None = None
    # Proxies whose X-Forwarded-For is believed for the client address (IPs or CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    # Larger bodies get 413 before they are read into memory.
    max_body_bytes: int = 64 * 1024
    # API_KEYS: name:role:sha256hex entries; no keys, no service.
    api_keys: tuple[ApiKey, ...] = ()
    # /metrics is open by default (scrapers sit inside the network); true: needs a read key.
    metrics_require_key: bool = False
    # Browser origins allowed by CORS; none (the default) means CORS stays off.
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            database_url=environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            db_pool_size=_int(environ, "DB_POOL_SIZE", cls.db_pool_size),
            db_max_overflow=_int(environ, "DB_MAX_OVERFLOW", cls.db_max_overflow),
            db_timeout=_float(environ, "DB_TIMEOUT", cls.db_timeout),
            validate_responses=_bool(environ, "VALIDATE_RESPONSES", cls.validate_responses),
            log_level=environ.get("LOG_LEVEL") or cls.log_level,
            log_format=environ.get("LOG_FORMAT") or None,
            trusted_proxies=_list(environ, "TRUSTED_PROXIES"),
            max_body_bytes=_int(environ, "MAX_BODY_BYTES", cls.max_body_bytes),
            api_keys=tuple(ApiKey.parse(entry) for entry in _list(environ, "API_KEYS")),
            metrics_require_key=_bool(environ, "METRICS_REQUIRE_KEY", cls.metrics_require_key),
            cors_origins=_list(environ, "CORS_ORIGINS"),
        )


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise SettingsError(f"{name} must be a number of seconds above 0, got {raw!r}")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in environ.get(name, "").split(",") if item.strip())
