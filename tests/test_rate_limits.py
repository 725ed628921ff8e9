"""Rate limits in one process: the setting, the headers, roles, unknown keys, and the
per-process fallback when Redis is not there (tests/e2e/test_rate_limits_live.py runs
them across workers and processes against a real Redis)."""

import dataclasses
import re
import time
import uuid
from types import SimpleNamespace

import pytest
import redis
from limits import WindowStats
from redis.backoff import NoBackoff
from redis.retry import Retry

from apikeys import new_key
from app import create_app
from middleware import rate_limits
from middleware.rate_limits import Decision, Limiter, Quota, _hit, _set_fields, parse_rate_limits
from settings import Settings, SettingsError
from tests.helpers import (
    API_KEYS,
    READ_KEY,
    WRITE_KEY,
    RedisServer,
    assert_problem,
    free_port,
    log_lines,
)

# Windows of a minute: nothing frees up while a test runs, so every count is exact.
LIMITS = "read=3/minute,write=2/minute,unknown=3/minute"
SYSTEM_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def limited(settings):  # type: ignore[no-untyped-def]
    """An app with low limits, counted in this process (no RATE_LIMIT_STORAGE)."""
    application = create_app(dataclasses.replace(settings, rate_limits=LIMITS))
    yield application
    application.app.extensions["user_store"].engine.dispose()


def policy(response):  # type: ignore[no-untyped-def]
    return response.headers.get("ratelimit-policy")


def remaining(response):  # type: ignore[no-untyped-def]
    """RateLimit's r and t (draft-ietf-httpapi-ratelimit-headers-10), or None."""
    field = response.headers.get("ratelimit")
    if field is None:
        return None
    match = re.fullmatch(r'"(\w+)";r=(\d+);t=(\d+)', field)
    assert match, field
    return match[1], int(match[2]), int(match[3])


class TestSetting:
    def test_rates_bursts_and_windows(self) -> None:
        # Empty entries (a doubled or trailing comma) are skipped, wherever they are.
        quotas = parse_rate_limits(" read=50/second,, write=10/second;burst=20 ,unknown=5/minute,")
        assert quotas == {
            "read": Quota("read", 50, 1),
            "write": Quota("write", 20, 2),
            "unknown": Quota("unknown", 5, 60),
        }
        assert parse_rate_limits("read=100/hours")["read"] == Quota("read", 100, 3600)
        assert parse_rate_limits("") == {}

    def test_one_is_the_smallest_rate_and_the_smallest_burst(self) -> None:
        assert parse_rate_limits("read=1/second")["read"] == Quota("read", 1, 1)
        # One request in any 30 s: the same average as 2/minute.
        assert parse_rate_limits("write=2/minute;burst=1")["write"] == Quota("write", 1, 30)

    @pytest.mark.parametrize(
        ("text", "complaint"),
        [
            ("admin=5/second", "policy must be one of read, write, unknown"),
            (
                "read=0/second",
                "the rate must be N/second, N/minute, N/hour or N/day with N above 0",
            ),
            ("read=5", "rate must be N/second"),
            ("read=5/fortnight", "rate must be N/second"),
            ("read=-5/second", "rate must be N/second"),
            (
                "read=5/second;burst=7",
                "burst / rate must be a whole number of seconds (here 7 x 1 / 5)",
            ),
            ("read=5/second;bust=10", "write the burst as ;burst=B"),
            ("read=5/second;burst=0", "write the burst as ;burst=B"),
            # digits str.isdigit() takes and int() does not (a ValueError, not the reason)
            pytest.param("read=\u00b2/second", "rate must be N/second", id="rate-superscript-2"),
            pytest.param(
                "read=5/second;burst=\u00b2",
                "write the burst as ;burst=B",
                id="burst-superscript-2",
            ),
            pytest.param("read=\u0665/second", "rate must be N/second", id="rate-arabic-indic-5"),
            ("read=5/second,read=6/second", "names 'read' twice"),
        ],
    )
    def test_what_cannot_be_used_is_refused_with_the_reason(self, text, complaint) -> None:
        with pytest.raises(SettingsError, match=re.escape(complaint)):
            parse_rate_limits(text)

    def test_read_from_the_environment(self) -> None:
        settings = Settings.from_env(
            {"RATE_LIMITS": "read=5/second", "RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/0"}
        )
        assert settings.rate_limits == "read=5/second"
        assert settings.rate_limit_storage == "redis://127.0.0.1:6379/0"
        assert Settings.from_env({}).rate_limits == ""  # off unless configured

    def test_a_start_with_a_bad_setting_fails(self, settings) -> None:
        with pytest.raises(SettingsError, match="RATE_LIMITS"):
            create_app(dataclasses.replace(settings, rate_limits="read=fast"))
        # Only the scheme is named: the rest of the URL may hold a password.
        storage = "memcached://user:secret@cache:11211"
        with pytest.raises(SettingsError) as refused:
            create_app(
                dataclasses.replace(
                    settings, rate_limits="read=5/second", rate_limit_storage=storage
                )
            )
        assert str(refused.value) == "RATE_LIMIT_STORAGE must be a redis:// URL, got 'memcached'"


class TestPerKey:
    def test_headers_count_down_then_429_with_retry_after(self, limited) -> None:
        with limited.test_client(headers={"X-API-Key": READ_KEY}) as http:
            seen = []
            for _ in range(3):
                response = http.get("/v1/users")
                assert response.status_code == 200
                assert policy(response) == '"read";q=3;w=60'
                seen.append(remaining(response))
            assert [r[:2] for r in seen] == [("read", 2), ("read", 1), ("read", 0)]
            assert all(1 <= t <= 60 for *_, t in seen)

            refused = http.get("/v1/users")
            body = assert_problem(refused, 429)
            assert "'reader' may send 3 read requests in any 60 s" in body["detail"]
            assert policy(refused) == '"read";q=3;w=60'
            name, left, reset = remaining(refused)
            assert (name, left) == ("read", 0)
            assert refused.headers["retry-after"] == str(reset)  # the same moment
            assert 1 <= reset <= 60

    def test_a_wait_of_one_second_is_said_as_1(self, settings) -> None:
        app = create_app(dataclasses.replace(settings, rate_limits="read=1/second"))
        with app.test_client(headers={"X-API-Key": READ_KEY}) as reader:
            assert reader.get("/v1/users").status_code == 200
            refused = reader.get("/v1/users")  # well within the second
            body = assert_problem(refused, 429)
            assert body["detail"] == (
                "Key 'reader' may send 1 read requests in any 1 s; retry after 1 s."
            )
            assert refused.headers["retry-after"] == "1"
            assert remaining(refused) == ("read", 0, 1)
        app.app.extensions["user_store"].engine.dispose()

    def test_a_window_freed_while_it_was_counted_says_t_0(self) -> None:
        stats = WindowStats(reset_time=time.time() - 0.5, remaining=1)
        store = SimpleNamespace(hit=lambda *_: True, get_window_stats=lambda *_: stats)
        assert _hit(store, Quota("read", 2, 60), "reader") == Decision(True, 1, 0)  # type: ignore[arg-type]

    def test_fields_go_on_an_answer_that_brings_no_header_list(self) -> None:
        message = {"type": "http.response.start", "status": 200}  # ASGI: headers optional
        _set_fields(message, {"RateLimit": '"read";r=1;t=60'})
        assert message["headers"] == [(b"ratelimit", b'"read";r=1;t=60')]

    def test_each_role_is_its_own_budget_and_each_key_its_own(self, limited) -> None:
        with limited.test_client(headers={"X-API-Key": WRITE_KEY}) as writer:
            for _ in range(2):
                created = writer.post("/v1/users", json={"name": "Ada", "age": 36})
                assert created.status_code == 201
                assert policy(created) == '"write";q=2;w=60'
            assert_problem(writer.post("/v1/users", json={"name": "Ada", "age": 36}), 429)
            # Its reads have their own budget: still all three left.
            assert remaining(writer.get("/v1/users"))[:2] == ("read", 2)
        with limited.test_client(headers={"X-API-Key": READ_KEY}) as reader:
            assert remaining(reader.get("/v1/users"))[:2] == ("read", 2)  # another key

    def test_invalid_requests_count_and_forbidden_ones_do_not(self, limited) -> None:
        with limited.test_client(headers={"X-API-Key": READ_KEY}) as reader:
            invalid = reader.get("/v1/users?limit=zero")
            assert_problem(invalid, 400)
            assert remaining(invalid)[:2] == ("read", 2)
            forbidden = reader.post("/v1/users", json={"name": "Ada", "age": 36})
            assert_problem(forbidden, 403)
            assert remaining(forbidden) is None
            assert remaining(reader.get("/v1/users"))[:2] == ("read", 1)

    def test_probes_spec_ui_and_metrics_are_not_limited(self, limited) -> None:
        with limited.test_client(headers={"X-API-Key": READ_KEY}) as reader:
            for _ in range(5):
                for path in ("/healthz", "/readyz", "/v1/openapi.json", "/metrics"):
                    response = reader.get(path)
                    assert response.status_code == 200, path
                    assert remaining(response) is None, path
            assert remaining(reader.get("/v1/users"))[:2] == ("read", 2)

    def test_default_settings_limit_nothing(self, client) -> None:
        for _ in range(20):
            response = client.get("/v1/users")
            assert response.status_code == 200
            assert remaining(response) is None


class TestUnknownKeys:
    def test_401s_count_per_address_then_429_even_for_a_valid_key(self, limited) -> None:
        with limited.test_client(client=("198.51.100.7", 5000)) as guesser:
            answers = [guesser.get("/v1/users", headers={"X-API-Key": "guess"}) for _ in range(2)]
            answers.append(guesser.get("/v1/users"))  # no key at all counts the same
            assert [r.status_code for r in answers] == [401] * 3
            assert [remaining(r)[:2] for r in answers] == [("unknown", n) for n in (2, 1, 0)]
            assert policy(answers[0]) == '"unknown";q=3;w=60'

            body = assert_problem(guesser.get("/v1/users", headers={"X-API-Key": "guess"}), 429)
            assert "without a valid API key from this address" in body["detail"]
            # Over the limit, the address is refused before its key is looked at.
            refused = guesser.get("/v1/users", headers={"X-API-Key": READ_KEY})
            assert_problem(refused, 429)
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            # Probes, the spec and Swagger UI check no key: they answer whatever the
            # address did (a blocked address may share a NAT with an orchestrator).
            for path in ("/healthz", "/readyz", "/v1/openapi.json", "/v1/ui/"):
                assert guesser.get(path).status_code == 200, path
        with limited.test_client(client=("198.51.100.8", 5000)) as neighbour:
            assert neighbour.get("/v1/users", headers={"X-API-Key": READ_KEY}).status_code == 200
            assert_problem(neighbour.get("/v1/users"), 401)

    def test_an_address_is_refused_until_its_last_second_is_over(self, settings) -> None:
        app = create_app(dataclasses.replace(settings, rate_limits="unknown=1/second"))
        detail = (
            "Too many requests without a valid API key from this address (at most 1 in any"
            " 1 s); retry after 1 s."
        )
        with app.test_client(client=("198.51.100.9", 5000)) as guesser:
            assert_problem(guesser.get("/v1/users"), 401)
            over = guesser.get("/v1/users")  # well within the second
            assert assert_problem(over, 429)["detail"] == detail
            assert over.headers["retry-after"] == "1"
            # Less than a second left: still refused before the (valid) key is looked at.
            refused = guesser.get("/v1/users", headers={"X-API-Key": READ_KEY})
            assert assert_problem(refused, 429)["detail"] == detail
            assert remaining(refused) == ("unknown", 0, 1)
            assert refused.headers["retry-after"] == "1"
        app.app.extensions["user_store"].engine.dispose()

    def test_when_full_a_worker_forgets_the_oldest_blocked_address(
        self, settings, monkeypatch
    ) -> None:
        monkeypatch.setattr(rate_limits, "MAX_BLOCKED_ADDRESSES", 2)
        app = create_app(
            dataclasses.replace(
                settings, rate_limits="unknown=1/minute", trusted_proxies=("10.0.0.0/8",)
            )
        )
        clients = ("203.0.113.1", "203.0.113.2", "203.0.113.3")
        with app.test_client(client=("10.0.0.2", 5000)) as proxy:
            for client in clients:
                guesses = [
                    proxy.get("/v1/users", headers={"X-Forwarded-For": client}) for _ in "12"
                ]
                assert [r.status_code for r in guesses] == [401, 429]
            with_key = [
                proxy.get("/v1/users", headers={"X-Forwarded-For": c, "X-API-Key": READ_KEY})
                for c in clients
            ]
            assert [r.status_code for r in with_key] == [200, 429, 429]
        app.app.extensions["user_store"].engine.dispose()

    def test_behind_a_trusted_proxy_each_forwarded_client_counts_alone(self, settings) -> None:
        app = create_app(
            dataclasses.replace(settings, rate_limits=LIMITS, trusted_proxies=("10.0.0.0/8",))
        )
        with app.test_client(client=("10.0.0.2", 5000)) as proxy:
            for client in ("203.0.113.1", "203.0.113.2"):
                answers = [
                    proxy.get("/v1/users", headers={"X-Forwarded-For": client}) for _ in range(3)
                ]
                assert [remaining(r)[1] for r in answers] == [2, 1, 0]
            assert_problem(proxy.get("/v1/users", headers={"X-Forwarded-For": client}), 429)
        app.app.extensions["user_store"].engine.dispose()

    def test_metrics_behind_a_key_count_too(self, settings) -> None:
        app = create_app(
            dataclasses.replace(settings, rate_limits=LIMITS, metrics_require_key=True)
        )
        with app.test_client() as guesser:
            assert [guesser.get("/metrics").status_code for _ in range(4)] == [401] * 3 + [429]
        app.app.extensions["user_store"].engine.dispose()


def metric(http, name, labels=""):  # type: ignore[no-untyped-def]
    pattern = rf"^{name}{{?{re.escape(labels)}}}? ([0-9.e+]+)$"
    match = re.search(pattern, http.get("/metrics").text, re.MULTILINE)
    return float(match[1]) if match else 0.0


class TestWithoutRedis:
    def test_a_limiter_without_a_store_counts_in_this_process(self) -> None:
        limiter, quota = Limiter(), Quota("read", 1, 60)
        assert [limiter.hit(quota, "reader").allowed for _ in range(2)] == [True, False]

    def test_an_unreachable_store_means_each_process_counts_alone(
        self, settings, capsys, monkeypatch
    ):
        monkeypatch.setattr(rate_limits, "STORE_RETRY_SECONDS", 60.0)  # asked once in this test
        dead = f"redis://127.0.0.1:{free_port()}/0"
        app = create_app(dataclasses.replace(settings, rate_limits=LIMITS, rate_limit_storage=dead))
        with app.test_client(headers={"X-API-Key": READ_KEY}) as reader:
            errors_before = metric(reader, "rate_limit_store_errors_total")
            local_before = metric(reader, "rate_limit_local_decisions_total", 'policy="read"')
            capsys.readouterr()
            statuses = [reader.get("/v1/users").status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]  # the limit still holds, per process
            assert metric(reader, "rate_limit_store_errors_total") == errors_before + 1
            local = metric(reader, "rate_limit_local_decisions_total", 'policy="read"')
            assert local == local_before + 4
        lines = log_lines(capsys)
        failures = [line for line in lines if line["event"].startswith("rate limit store failed")]
        assert len(failures) == 1, failures  # once per incident, not once per request
        assert failures[0]["level"] == "error"
        assert failures[0]["error"].startswith("ConnectionError: ")
        assert "Connection refused" in failures[0]["error"]
        app.app.extensions["user_store"].engine.dispose()

    def test_the_store_is_asked_again_and_its_return_is_logged_once(
        self, settings, tmp_path, capsys, monkeypatch
    ) -> None:
        monkeypatch.setattr(rate_limits, "STORE_RETRY_SECONDS", 0.0)  # ask on every request
        server = RedisServer(free_port(), tmp_path)  # started halfway through
        app = create_app(
            dataclasses.replace(
                settings, rate_limits="read=3/minute", rate_limit_storage=server.url
            )
        )
        try:
            with app.test_client(headers={"X-API-Key": READ_KEY}) as reader:
                capsys.readouterr()
                assert [remaining(reader.get("/v1/users"))[1] for _ in "12"] == [2, 1]  # alone
                server.start()
                assert [remaining(reader.get("/v1/users"))[1] for _ in "12"] == [2, 1]  # shared
        finally:
            server.stop()
        lines = log_lines(capsys)
        logged = [(line["level"], line.get("event")) for line in lines if line["level"] != "info"]
        assert logged == [
            ("error", "rate limit store failed; this worker counts alone until it answers"),
            ("warning", "rate limit store answers again; limits are shared again"),
        ]
        app.app.extensions["user_store"].engine.dispose()


def _redis_unreachable(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return str(exc)
    return None


class TestWithRedis:
    """The system Redis (127.0.0.1:6379): two apps, as two processes would, share counts."""

    def test_each_call_is_bounded_and_retried_once_at_once(self) -> None:
        limiter = Limiter(f"{SYSTEM_REDIS}?socket_timeout=0.5")  # the URL's options win
        assert limiter.shared is not None
        options = limiter.shared.storage.storage.connection_pool.connection_kwargs
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (0.5, 0.25)
        assert options["retry"] == Retry(NoBackoff(), 1)

    def test_two_apps_share_one_count(self, settings) -> None:
        if reason := _redis_unreachable(SYSTEM_REDIS):
            pytest.skip(f"Redis at {SYSTEM_REDIS} is not reachable ({reason}); .ci/run starts it")
        name = f"shared-{uuid.uuid4().hex[:8]}"
        key, entry = new_key(name, "read")
        shared = dataclasses.replace(
            settings,
            api_keys=(*API_KEYS.split(","), entry),
            rate_limits="read=3/minute",
            rate_limit_storage=SYSTEM_REDIS,
        )
        first, second = create_app(shared), create_app(shared)
        headers = {"X-API-Key": key}
        with first.test_client(headers=headers) as one, second.test_client(headers=headers) as two:
            counted = [remaining(http.get("/v1/users"))[1] for http in (one, two, one)]
            assert counted == [2, 1, 0]
            assert_problem(two.get("/v1/users"), 429)
            assert_problem(one.get("/v1/users"), 429)
        # Under the service's own prefix, for an operator who looks for them or clears them.
        assert redis.Redis.from_url(SYSTEM_REDIS).keys(f"*{name}*") == [
            f"users-api:LIMITER/read/{name}/3/60/second".encode()
        ]
        for app in (first, second):
            app.app.extensions["user_store"].engine.dispose()
