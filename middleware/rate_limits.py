"""Rate limits: per API key for the role each operation needs, and per client address
for requests that bring no key or one the service does not know (RATE_LIMITS).

    RATE_LIMITS="read=50/second,write=10/second;burst=20,unknown=5/second"

- `read` / `write`: what one key may send to the operations that need that role (the
  spec's security requirement: `read` for GETs, `write` for the rest). A write key has
  both budgets. `KeyRateLimits` counts every request whose key passed connexion's check,
  before the request is validated: a malformed request costs as much as a good one.
  A read key refused a write (403) is answered by the security check and not counted.
- `unknown`: answers of 401 per client address (TRUSTED_PROXIES believed as in the access
  line). Once an address is over, `RateLimitAnswers` refuses it with 429 before any
  key is looked at, valid or not, until its window frees a request: guessing keys is as
  slow as the limit (a valid key let through would tell the guesser it was right). What
  checks no key (probes, the spec, the UI) still answers. Each worker learns that from
  its own 401s, so right after the limit is reached one more guess per worker can still
  be checked.
- A policy left out is not limited; /healthz, /readyz, the spec, the UI and /metrics
  never count against a key.

`N/unit` allows N requests in any window of one unit (second, minute, hour, day): a
burst of N. `;burst=B` allows B in any window of B/N units (which must be whole
seconds), for the same average rate. The window moves (limits' moving window): no two
windows' worth of requests can meet at a boundary, as they can with fixed windows, and
no estimate is involved, as it is with the sliding-window counter. The price is one
timestamp per counted request in the store, so keep windows short.

Counts live in Redis when RATE_LIMIT_STORAGE names it, shared by every worker and
replica; otherwise, and while Redis fails, each worker counts alone. See `Limiter`.
"""

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import structlog
from connexion.lifecycle import ConnexionRequest
from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connexion_ext import operation_id
from contract import SPEC_URL, UI_PATH, operations
from logging_ext import ClientAddress, metrics
from problems import ProblemResponse
from settings import SettingsError

log = structlog.get_logger(__name__)

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
POLICIES = ("read", "write", "unknown")
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
# Each Redis call is bounded: a stopped or frozen Redis costs a call at most twice this
# (one reconnect), a request two calls, never a hang. RATE_LIMIT_STORAGE's query string
# overrides them (?socket_timeout=0.5&socket_connect_timeout=0.5).
REDIS_TIMEOUTS = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
# After a failed call a worker counts alone this long before it asks Redis again.
STORE_RETRY_SECONDS = 1.0
# Where KeyRateLimits leaves the response's RateLimit fields (connexion's request context).
FIELDS = "users_api.rate_limit_fields"
# Addresses a worker remembers as over their `unknown` limit (the oldest are forgotten).
MAX_BLOCKED_ADDRESSES = 10_000


@dataclass(frozen=True)
class Quota:
    """`amount` requests in any `window` seconds, counted per key (or address)."""

    policy: str
    amount: int
    window: int

    @cached_property
    def item(self) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(self.amount, self.window)

    def policy_field(self) -> str:
        # RateLimit-Policy, draft-ietf-httpapi-ratelimit-headers-10 (September 2025),
        # section 3: a quoted policy name; q = quota, w = window in seconds.
        return f'"{self.policy}";q={self.amount};w={self.window}'


def parse_rate_limits(text: str) -> dict[str, Quota]:
    """RATE_LIMITS: comma-separated `policy=N/unit[;burst=B]` (see the module doc)."""
    quotas: dict[str, Quota] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        quota = _parse_entry(entry)
        if quota.policy in quotas:
            raise SettingsError(f"RATE_LIMITS names {quota.policy!r} twice")
        quotas[quota.policy] = quota
    return quotas


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²" (which int() refuses) and other
    scripts' digits (which int() reads: "\\u0665" is 5)."""
    text = text.strip()
    return text.isascii() and text.isdigit()


def _parse_entry(entry: str) -> Quota:
    policy, _, rule = entry.partition("=")
    policy = policy.strip()
    if policy not in POLICIES:
        raise SettingsError(
            f"RATE_LIMITS entry {entry!r}: the policy must be one of {', '.join(POLICIES)}"
        )
    rate, _, burst_part = rule.partition(";")
    count, _, unit = rate.strip().partition("/")
    unit = unit.strip().removesuffix("s")
    if not (_digits(count) and int(count) > 0 and unit in UNITS):
        raise SettingsError(
            f"RATE_LIMITS entry {entry!r}: the rate must be N/second, N/minute, N/hour"
            " or N/day with N above 0"
        )
    amount, seconds = int(count), UNITS[unit]
    if not burst_part.strip():
        return Quota(policy, amount, seconds)
    name, _, value = burst_part.partition("=")
    if name.strip() != "burst" or not _digits(value) or int(value) < 1:
        raise SettingsError(f"RATE_LIMITS entry {entry!r}: write the burst as ;burst=B, B >= 1")
    burst = int(value)
    if (burst * seconds) % amount:
        raise SettingsError(
            f"RATE_LIMITS entry {entry!r}: burst / rate must be a whole number of seconds"
            f" (here {burst} x {seconds} / {amount})"
        )
    return Quota(policy, burst, burst * seconds // amount)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    # Whole seconds until the window lets one more request in (RateLimit's t).
    reset: int

    def fields(self, quota: Quota) -> dict[str, str]:
        """RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-10,
        sections 3 and 4), plus Retry-After on a refusal, naming the same moment."""
        headers = {
            "RateLimit-Policy": quota.policy_field(),
            "RateLimit": f'"{quota.policy}";r={self.remaining};t={self.reset}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(self.reset, 1))
        return headers


class Limiter:
    """Counts hits, in Redis when given one, else in this process.

    When a call to Redis fails or times out, the worker counts alone (as if no Redis were
    configured) for STORE_RETRY_SECONDS, then tries Redis again: fail-open to the
    per-process limit, for every policy, rather than refusing everyone (fail-closed) or
    no one. The first failure of an incident is logged once per worker, as is the
    recovery; every failed call and every request counted alone is a metric.
    """

    def __init__(self, storage_uri: str = "") -> None:
        self.local = MovingWindowRateLimiter(MemoryStorage())
        self.shared = _redis_limiter(storage_uri) if storage_uri else None
        self.retry_at = 0.0
        self.failing = False

    def hit(self, quota: Quota, who: str) -> Decision:
        if self.shared is not None and time.monotonic() >= self.retry_at:
            try:
                decision = _hit(self.shared, quota, who)
            except StorageError as exc:
                self._failed(exc)
            else:
                if self.failing:
                    self.failing = False
                    log.warning("rate limit store answers again; limits are shared again")
                return decision
        if self.shared is not None:
            metrics.RATE_LIMITED_LOCALLY.labels(quota.policy).inc()
        return _hit(self.local, quota, who)

    def _failed(self, exc: StorageError) -> None:
        metrics.RATE_LIMIT_STORE_ERRORS.inc()
        self.retry_at = time.monotonic() + STORE_RETRY_SECONDS
        if not self.failing:
            self.failing = True
            log.error(
                "rate limit store failed; this worker counts alone until it answers",
                error=f"{type(exc.storage_error).__name__}: {exc.storage_error}",
            )


def _redis_limiter(uri: str) -> MovingWindowRateLimiter:
    if not uri.startswith(REDIS_SCHEMES):
        raise SettingsError(f"RATE_LIMIT_STORAGE must be a redis:// URL, got {uri.split(':')[0]!r}")
    storage = RedisStorage(
        uri,
        key_prefix="users-api",
        wrap_exceptions=True,
        # One immediate reconnect (a pooled connection from before a Redis restart),
        # no backoff sleeps: redis-py's default retries three times with up to 14 s.
        retry=Retry(NoBackoff(), 1),  # type: ignore[arg-type]
        **REDIS_TIMEOUTS,  # type: ignore[arg-type]
    )
    return MovingWindowRateLimiter(storage)


def _hit(limiter: MovingWindowRateLimiter, quota: Quota, who: str) -> Decision:
    item = quota.item
    allowed = limiter.hit(item, quota.policy, who)
    stats = limiter.get_window_stats(item, quota.policy, who)
    reset = max(0, math.ceil(stats.reset_time - time.time()))
    return Decision(allowed, max(0, stats.remaining), reset)


class RateLimits:
    """The configured quotas, the role each operation needs, and the limiter."""

    def __init__(self, quotas: Mapping[str, Quota], limiter: Limiter, spec: dict[str, Any]):
        self.quotas = dict(quotas)
        self.limiter = limiter
        self.role_of = {
            operation["operationId"]: _required_role(operation, spec)
            for _path, _method, operation in operations(spec)
        }
        # What checks no key answers whatever an address did (an orchestrator or a
        # person reading the docs may share it): the probes, the spec, Swagger UI.
        self.open_paths = frozenset(
            path for path, _method, operation in operations(spec) if operation.get("security") == []
        ) | {SPEC_URL}

    def checks_a_key(self, path: str) -> bool:
        return path not in self.open_paths and not path.startswith(UI_PATH)

    @classmethod
    def from_settings(
        cls, rate_limits: str, storage_uri: str, spec: dict[str, Any]
    ) -> "RateLimits | None":
        quotas = parse_rate_limits(rate_limits)
        if not quotas:
            return None
        return cls(quotas, Limiter(storage_uri), spec)

    def quota_for(self, operation: str | None) -> Quota | None:
        role = self.role_of.get(operation) if operation else None
        return self.quotas.get(role) if role else None


def _required_role(operation: dict[str, Any], spec: dict[str, Any]) -> str | None:
    requirements = operation.get("security", spec.get("security", []))
    scopes = [
        scope for requirement in requirements for scopes in requirement.values() for scope in scopes
    ]
    return scopes[0] if scopes else None


def _set_fields(message: Message, fields: Mapping[str, str]) -> None:
    message["headers"] = list(message.get("headers", []))
    headers = MutableHeaders(scope=message)
    for name, value in fields.items():
        headers[name] = value


def _context(scope: Scope) -> dict[str, Any]:
    # connexion's request context (docs: context.rst): its security check puts the key's
    # name there as "user" (api_key_info's "sub"); other middleware may add entries.
    context: dict[str, Any] = ConnexionRequest(scope).context
    return context


class KeyRateLimits:
    """After connexion's key check (MiddlewarePosition.BEFORE_VALIDATION): one hit per
    request on the key's budget for the role the operation needs.

    The RateLimit fields go into the request context, and `RateLimitAnswers` puts them on
    the response: errors raised further in (a 400, a 404) are answered by connexion's
    exception handling, outside this middleware.
    """

    def __init__(self, app: ASGIApp, *, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        quota = self.limits.quota_for(operation_id(scope)) if scope["type"] == "http" else None
        context = _context(scope) if quota else {}
        key_name = context.get("user")
        if quota is None or key_name is None:
            await self.app(scope, receive, send)
            return
        decision = self.limits.limiter.hit(quota, key_name)
        context[FIELDS] = fields = decision.fields(quota)
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        detail = (
            f"Key {key_name!r} may send {quota.amount} {quota.policy} requests in any"
            f" {quota.window} s; retry after {fields['Retry-After']} s."
        )
        await ProblemResponse(429, detail, headers=fields)(scope, receive, send)


class RateLimitAnswers:
    """Outside connexion's exception handling: puts KeyRateLimits' fields on whatever
    answer the request gets, and (with an `unknown` quota) counts 401 answers per client
    address; once an address is over, its requests are refused before any key is checked.
    """

    def __init__(
        self, app: ASGIApp, *, limits: RateLimits, trusted_proxies: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.limits = limits
        self.quota = limits.quotas.get("unknown")
        self.client = ClientAddress(trusted_proxies)
        self.blocked: dict[str, float] = {}  # address -> time.monotonic() it may retry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = None
        if self.quota and self.limits.checks_a_key(scope["path"]):
            address = self.client(scope, Headers(scope=scope)) or "-"
            wait = self.blocked.get(address, 0.0) - time.monotonic()
            if wait > 0:
                await self._refuse(scope, receive, send, Decision(False, 0, math.ceil(wait)))
                return
            self.blocked.pop(address, None)
        refused = False

        async def send_with_fields(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start":
                if message["status"] == 401 and self.quota and address:
                    decision = self.limits.limiter.hit(self.quota, address)
                    if not decision.allowed:
                        # This 401 is not sent: the client hears 429 instead, and so do
                        # its next requests until the window frees one.
                        refused = True
                        self._block(address, decision.reset)
                        await self._refuse(scope, receive, send, decision)
                        return
                    _set_fields(message, decision.fields(self.quota))
                elif fields := _context(scope).get(FIELDS):
                    _set_fields(message, fields)
            if not refused:
                await send(message)

        await self.app(scope, receive, send_with_fields)

    def _block(self, address: str, seconds: int) -> None:
        if len(self.blocked) >= MAX_BLOCKED_ADDRESSES:
            now = time.monotonic()
            self.blocked = {a: t for a, t in self.blocked.items() if t > now}
            while len(self.blocked) >= MAX_BLOCKED_ADDRESSES:
                del self.blocked[next(iter(self.blocked))]
        self.blocked[address] = time.monotonic() + max(seconds, 1)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        assert self.quota is not None
        detail = (
            f"Too many requests without a valid API key from this address (at most"
            f" {self.quota.amount} in any {self.quota.window} s); retry after"
            f" {max(decision.reset, 1)} s."
        )
        response = ProblemResponse(429, detail, headers=decision.fields(self.quota))
        await response(scope, receive, send)
