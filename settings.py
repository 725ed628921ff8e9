"""Configuration, read from the environment in one place, with safe defaults."""

import multiprocessing
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# A file beside the checkout: `make run` works with nothing else installed.
DEFAULT_DATABASE_URL = "sqlite:///data/users.sqlite3"


def _default_workers() -> int:
    # gunicorn's advice for its workers: two per core, plus one.
    return multiprocessing.cpu_count() * 2 + 1


@dataclass(frozen=True)
class Settings:
    # Where gunicorn (and `python -m serving serve`) listens.
    host: str = "127.0.0.1"
    port: int = 8080
    # gunicorn workers; each serves many requests at once (gevent).
    workers: int = field(default_factory=_default_workers)
    # Open connections per worker; DB_POOL_SIZE, not this, bounds the queries.
    worker_connections: int = 1000
    # Proxies whose X-Forwarded-* headers gunicorn believes (comma-separated, or *).
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # On SIGTERM, after the drain (drain_seconds), seconds in-flight requests get to
    # finish; together below the usual 30 s stop grace period of container platforms,
    # so the service exits before SIGKILL.
    graceful_timeout: int = 20
    database_url: str = DEFAULT_DATABASE_URL
    # Per worker. Under gevent one worker holds many requests at once, so the pool,
    # not the worker count, bounds how many talk to the database together.
    # Keep workers x (pool + overflow) below the server's max_connections (PostgreSQL's
    # default is 100; 5 workers x 10 = 50).
    db_pool_size: int = 5
    db_max_overflow: int = 5
    # Seconds a request waits for a free connection or another writer's lock; then 503.
    db_timeout: float = 5.0
    # none, or transaction: PgBouncer (or another pooler) in transaction mode sits in
    # front of PostgreSQL, so nothing may be kept in the session (storage/engine.py).
    db_pooler: str = "none"
    # Checks every response against the spec: on in tests, off in production (it costs).
    validate_responses: bool = False
    log_level: str = "INFO"
    # json | console; None picks JSON unless stdout is a terminal.
    log_format: str | None = None
    # Proxies whose X-Forwarded-For is believed for the client address (IPs or CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    # Larger bodies get 413 before they are read into memory.
    max_body_bytes: int = 64 * 1024
    # API_KEYS: name:role:sha256hex entries (apikeys.py parses them); no keys, no service.
    api_keys: tuple[str, ...] = ()
    # /metrics is open by default (scrapers sit inside the network); true: needs a read key.
    metrics_require_key: bool = False
    # Browser origins allowed by CORS; none (the default) means CORS stays off.
    cors_origins: tuple[str, ...] = ()
    # After SIGTERM: seconds of serving on with /readyz at 503, before accepting stops.
    drain_seconds: float = 5.0
    # Seconds a client may take to send a request's body; then 408.
    body_timeout: float = 30.0
    # A gunicorn worker is replaced after about this many requests (a slow leak never
    # takes the service down); gunicorn.conf.py adds a tenth of jitter.
    max_requests: int = 10000
    # true: PUT, PATCH and DELETE without If-Match get 428, so a client that skips it
    # cannot overwrite a change it never saw. Off by default: such writes go through.
    require_if_match: bool = False
    # Requests per key and role, and per client address for missing or unknown keys:
    # "read=50/second,write=10/second;burst=20,unknown=5/second" (middleware/rate_limits.py
    # parses it). Empty (the default): nothing is limited.
    rate_limits: str = ""
    # Where the counts live: redis://host:port/db, shared by every worker and replica.
    # Empty: each worker counts alone (the limit is then up to workers x the rate).
    rate_limit_storage: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        defaults = cls()
        return cls(
            host=environ.get("HOST") or cls.host,
            port=_int(environ, "PORT", cls.port),
            workers=_int(environ, "WEB_CONCURRENCY", defaults.workers),
            worker_connections=_int(environ, "WORKER_CONNECTIONS", cls.worker_connections),
            forwarded_allow_ips=environ.get("FORWARDED_ALLOW_IPS") or cls.forwarded_allow_ips,
            graceful_timeout=_int(environ, "GRACEFUL_TIMEOUT", cls.graceful_timeout),
            database_url=environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            db_pool_size=_int(environ, "DB_POOL_SIZE", cls.db_pool_size),
            db_max_overflow=_int(environ, "DB_MAX_OVERFLOW", cls.db_max_overflow),
            db_timeout=_float(environ, "DB_TIMEOUT", cls.db_timeout),
            db_pooler=_choice(environ, "DB_POOLER", ("none", "transaction")) or cls.db_pooler,
            validate_responses=_bool(environ, "VALIDATE_RESPONSES", cls.validate_responses),
            log_level=environ.get("LOG_LEVEL") or cls.log_level,
            log_format=_choice(environ, "LOG_FORMAT", ("json", "console")),
            trusted_proxies=_list(environ, "TRUSTED_PROXIES"),
            max_body_bytes=_int(environ, "MAX_BODY_BYTES", cls.max_body_bytes),
            api_keys=_list(environ, "API_KEYS"),
            metrics_require_key=_bool(environ, "METRICS_REQUIRE_KEY", cls.metrics_require_key),
            cors_origins=_list(environ, "CORS_ORIGINS"),
            drain_seconds=_float(environ, "DRAIN_SECONDS", cls.drain_seconds, zero=True),
            body_timeout=_float(environ, "BODY_TIMEOUT", cls.body_timeout),
            max_requests=_int(environ, "MAX_REQUESTS", cls.max_requests),
            require_if_match=_bool(environ, "REQUIRE_IF_MATCH", cls.require_if_match),
            rate_limits=environ.get("RATE_LIMITS", "").strip(),
            rate_limit_storage=environ.get("RATE_LIMIT_STORAGE", "").strip(),
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


def _float(environ: Mapping[str, str], name: str, default: float, *, zero: bool = False) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    low_enough = value < 3600
    if not (low_enough and (value >= 0 if zero else value > 0)):
        least = "0 or more" if zero else "above 0"
        raise SettingsError(f"{name} must be a number of seconds {least}, got {raw!r}")
    return value


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = environ.get(name) or None
    if raw is not None and raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


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
