"""API keys with roles, and the headers that keep personal data out of caches and sniffers."""

import hashlib
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import structlog

import apikeys
from apikeys import ApiKey, KeyConfigError, new_key
from settings import Settings
from tests.helpers import READ_KEY, ROOT, WRITE_KEY, asgi_request, assert_problem, settled

MERGE = {"Content-Type": "application/merge-patch+json"}

# Every operation on user data, with what it needs to be well-formed.
OPERATIONS = [
    ("get", "/v1", {}, "read"),
    ("get", "/v1/users", {}, "read"),
    ("get", "/v1/users/1", {}, "read"),
    ("post", "/v1/users", {"json": {"name": "Eve", "age": 3}}, "write"),
    ("put", "/v1/users/1", {"json": {"name": "Eve", "age": 3}}, "write"),
    ("patch", "/v1/users/1", {"content": b'{"age": 4}', "headers": MERGE}, "write"),
    ("delete", "/v1/users/1", {}, "write"),
]
IDS = [f"{method} {path}" for method, path, _, _ in OPERATIONS]


@pytest.fixture
def ada(client):
    response = client.post("/v1/users", json={"name": "Ada", "age": 36})
    assert response.json()["id"] == 1
    return response.json()


def call(app, method, path, kwargs, key):
    headers = dict(kwargs.get("headers", {}))
    if key is not None:
        headers["X-API-Key"] = key
    with app.test_client() as http:
        return getattr(http, method)(path, **{**kwargs, "headers": headers})


@pytest.mark.parametrize(("method", "path", "kwargs", "_role"), OPERATIONS, ids=IDS)
@pytest.mark.parametrize(
    "key",
    [None, "", "wrong-key", WRITE_KEY + "x", "ü".encode(), "x" * 5000],
    ids=["none", "empty", "unknown", "near-miss", "non-ascii", "huge"],
)
def test_no_valid_key_is_401_and_changes_nothing(
    app, client, ada, method, path, kwargs, _role, key
):
    response = call(app, method, path, kwargs, key)
    assert_problem(response, 401)
    assert client.get("/v1/users/1").json() == ada


def shows_ada(path, body, ada):
    """Whether a read of `path` answered with what the directory holds: Ada alone."""
    if path == "/v1":
        return body["user_count"] == 1
    if path == "/v1/users":
        return body["items"] == [ada]
    return body == ada


def stored(client):
    """(name, age) of every user, read with the write key."""
    return [(user["name"], user["age"]) for user in client.get("/v1/users").json()["items"]]


@pytest.mark.parametrize(("method", "path", "kwargs", "role"), OPERATIONS, ids=IDS)
def test_a_read_key_reads_but_cannot_write(app, client, ada, method, path, kwargs, role):
    response = call(app, method, path, kwargs, READ_KEY)
    if role == "read":
        assert response.status_code == 200
        assert shows_ada(path, response.json(), ada)
    else:
        body = assert_problem(response, 403)
        assert "reader" in body["detail"] and "write" in body["detail"]
        assert client.get("/v1/users/1").json() == ada


# What each operation of OPERATIONS answers with the write key, and what is stored after.
WRITE_KEY_OUTCOMES = [
    (200, [("Ada", 36)]),
    (200, [("Ada", 36)]),
    (200, [("Ada", 36)]),
    (201, [("Ada", 36), ("Eve", 3)]),
    (200, [("Eve", 3)]),
    (200, [("Ada", 4)]),
    (204, []),
]


@pytest.mark.parametrize("path", ["/v1", "/v1/users", "/v1/users/1", "/v1/users/abc"])
def test_head_needs_a_key_like_get(app, ada, path):
    # A HEAD answer has no body: the status and media type are the GET's.
    for key, status in ((None, 401), ("wrong-key", 401), (READ_KEY, 200)):
        response = call(app, "head", path, {}, key)
        expected = 400 if path.endswith("abc") and key == READ_KEY else status
        assert response.status_code == expected, (key, response.headers)
        assert response.content == b""


@pytest.mark.parametrize("path", ["/v1/openapi.json", "/v1/ui/", "/healthz", "/readyz"])
def test_public_paths_need_no_key(anonymous, path):
    assert anonymous.get(path).status_code == 200


def test_logs_name_the_key_never_the_key(client, capsys):
    capsys.readouterr()
    response = client.post("/v1/users", json={"name": "Ada", "age": 36})
    refused = client.get("/v1/users", headers={"X-API-Key": "not-a-key-but-still-secret"})
    out = capsys.readouterr().out
    assert WRITE_KEY not in out and "not-a-key-but-still-secret" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    access = [line for line in lines if line.get("request_id") == response.headers["x-request-id"]]
    assert {line.get("api_key") for line in access} == {"tester"}
    [rejected] = [line for line in lines if line["event"] == "api key rejected"]
    assert (rejected["level"], rejected["request_id"]) == ("info", refused.headers["x-request-id"])


class TestHeaders:
    def test_user_data_is_never_cached_or_sniffed(self, client, ada):
        for path in ("/v1/users", "/v1/users/1", "/v1"):
            response = client.get(path)
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "allow" not in response.headers  # only a 405 says what the path allows

    def test_an_answer_that_starts_with_no_header_list_gets_the_headers(self):
        # ASGI lets http.response.start leave out "headers".
        import asyncio

        from contract import load_spec
        from middleware.headers import ResponseHeadersMiddleware

        async def bare(scope, receive, send):  # type: ignore[no-untyped-def]
            await send({"type": "http.response.start", "status": 405})

        sent: list[dict] = []

        async def send(message):  # type: ignore[no-untyped-def]
            sent.append(message)

        guarded = ResponseHeadersMiddleware(bare, load_spec())
        asyncio.run(guarded({"type": "http", "path": "/v1/users/7"}, None, send))
        assert sorted(sent[0]["headers"]) == [
            (b"allow", b"GET, PUT, PATCH, DELETE, HEAD"),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
        ]

    def test_only_the_apis_data_is_kept_out_of_caches(self, anonymous):
        response = anonymous.get("/healthz")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "cache-control" not in response.headers

    def test_errors_get_the_headers_too(self, anonymous):
        for response in (anonymous.get("/v1/users"), anonymous.get("/nowhere")):
            assert response.headers["x-content-type-options"] == "nosniff"

    def test_cors_is_off_by_default(self, client):
        response = client.get("/v1/users", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers


class TestCors:
    @pytest.fixture
    def settings(self, settings):
        return replace(settings, cors_origins=("https://app.example",))

    @staticmethod
    def preflight(client, origin, method, headers=None):
        asked = {"Origin": origin, "Access-Control-Request-Method": method}
        if headers:
            asked["Access-Control-Request-Headers"] = headers
        return client.options("/v1/users", headers=asked)

    def test_listed_origins_may_call_with_a_key(self, anonymous):
        preflight = self.preflight(
            anonymous, "https://app.example", "POST", "X-API-Key, Content-Type"
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"

    def test_a_browser_may_read_what_a_client_acts_on(self, client):
        response = client.get("/v1/users", headers={"Origin": "https://app.example"})
        exposed = {
            h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
        }
        assert exposed == {
            "etag",
            "location",
            "link",
            "x-request-id",  # versions, new users, pages, logs
            "retry-after",
            "ratelimit",
            "ratelimit-policy",  # when to come back (429, 503)
        }

    def test_a_client_may_send_its_own_request_id(self, anonymous):
        preflight = self.preflight(
            anonymous, "https://app.example", "GET", "X-API-Key, X-Request-ID"
        )
        assert preflight.status_code == 200

    def test_a_refused_preflight_is_a_problem(self, anonymous):
        preflight = self.preflight(anonymous, "https://evil.example", "POST")
        assert preflight.status_code == 400
        assert preflight.headers["content-type"] == "application/problem+json"
        problem = preflight.json()
        assert problem["status"] == 400
        assert problem["detail"] == "Disallowed CORS origin."
        assert problem["request_id"] == preflight.headers["x-request-id"]
        # starlette's CORS headers are kept; the length is the problem document's.
        assert preflight.headers["access-control-allow-methods"]
        assert preflight.headers["vary"].startswith("Origin")
        assert int(preflight.headers["content-length"]) == len(preflight.content)

    def test_other_origins_are_not_allowed(self, client):
        response = client.get("/v1/users", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers


PROMETHEUS_TEXT = "text/plain; version=1.0.0; charset=utf-8"


def test_metrics_are_open_by_default(anonymous):
    response = anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == PROMETHEUS_TEXT
    assert "http_requests_total" in response.text
    head = anonymous.head("/metrics")
    assert (head.status_code, head.content) == (200, b"")
    # Only GET and HEAD scrape; anything else is the app's (no such path).
    assert assert_problem(anonymous.post("/metrics"), 404)


class TestGuardedMetrics:
    @pytest.fixture
    def settings(self, settings):
        return replace(settings, metrics_require_key=True)

    def test_guarded_metrics_need_a_read_key(self, anonymous):
        problem = assert_problem(anonymous.get("/metrics"), 401)
        assert problem["detail"] == "/metrics needs an API key (read)."
        assert_problem(anonymous.get("/metrics", headers={"X-API-Key": "nope"}), 401)
        assert anonymous.head("/metrics").status_code == 401
        for key in (READ_KEY, WRITE_KEY):  # a write key may read too
            scraped = anonymous.get("/metrics", headers={"X-API-Key": key})
            assert scraped.status_code == 200
            assert scraped.headers["content-type"] == PROMETHEUS_TEXT
            assert "http_requests_total" in scraped.text


class TestKeys:
    def test_new_keys_are_random_and_only_their_digest_is_configured(self):
        key, entry = new_key("alice", "read")
        other, _ = new_key("alice", "read")
        assert key != other and len(key) == 43  # 32 bytes of entropy, base64url
        name, role, digest = entry.split(":")
        assert (name, role) == ("alice", "read")
        assert digest == hashlib.sha256(key.encode()).hexdigest()
        assert key not in entry

    @pytest.mark.parametrize(
        ("entry", "refusal"),
        [
            ("alice", "API_KEYS entry 'alice' is not name:role:sha256hex"),
            ("a:b:c:d", "API_KEYS entry 'a' is not name:role:sha256hex"),
            (
                "alice:admin:" + "0" * 64,
                "API_KEYS entry 'alice' has role 'admin'; use read or write",
            ),
            ("alice:read:xyz", "API_KEYS entry 'alice' needs a 64-hex-digit SHA-256 digest"),
            (
                "alice:read:" + "0" * 63,
                "API_KEYS entry 'alice' needs a 64-hex-digit SHA-256 digest",
            ),
            (
                "alice:read:" + "00 " * 32,
                "API_KEYS entry 'alice' needs a 64-hex-digit SHA-256 digest",
            ),
        ],
    )
    def test_malformed_entries_are_refused_saying_what_is_wrong(self, entry, refusal):
        with pytest.raises(KeyConfigError) as refused:
            ApiKey.parse(entry)
        assert str(refused.value) == refusal

    def test_a_key_is_found_by_its_digest_and_what_cannot_be_one_is_no_key(self):
        key, entry = new_key("alice", "read")
        keyring = apikeys.Keyring.from_entries([entry])
        assert keyring.find(key) == ApiKey.parse(entry)
        # A lone surrogate (how Python keeps bytes it could not decode) is no error.
        assert keyring.find(key + "\udc80") is None

    def test_the_key_function_gives_connexion_the_keys_name_and_scopes(self, monkeypatch):
        # connexion hands this to a handler that asks for token_info; "sub" is its user.
        key, entry = new_key("alice", "read")
        monkeypatch.setattr(apikeys, "_keyring", apikeys.Keyring.from_entries([entry]))
        try:
            assert apikeys.api_key_info(key) == {"sub": "alice", "scope": ["read"]}
            assert apikeys.api_key_info(key, ["read"]) == {"sub": "alice", "scope": ["read"]}
            assert apikeys.api_key_info("not " + key) is None
        finally:
            structlog.contextvars.clear_contextvars()  # it bound the key's name for the log

    def test_settings_read_keys_from_the_environment(self):
        _, entry = new_key("ci", "write")
        settings = Settings.from_env({"API_KEYS": f" {entry} , "})
        assert settings.api_keys == (entry,)

    def test_the_key_command_prints_a_key_and_its_entry(self):
        result = subprocess.run(
            [sys.executable, "-m", "apikeys", "new", "bob", "write"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        fields = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
        key, entry = fields["key"].strip(), fields["API_KEYS"].strip()
        assert ApiKey.parse(entry).digest == hashlib.sha256(key.encode()).digest()

    def test_the_dev_key_is_created_once_and_kept(self, tmp_path, monkeypatch, capsys):
        monkeypatch.chdir(tmp_path)
        assert apikeys.main(["dev"]) == 0
        first = capsys.readouterr()
        assert apikeys.main(["dev"]) == 0
        second = capsys.readouterr()
        key, entry = (tmp_path / ".dev-api-key").read_text(encoding="utf-8").splitlines()
        # The first run shows the key once, on stderr; stdout is only the API_KEYS entry.
        assert "WARNING" in first.err and "DEVELOPMENT" in first.err and key in first.err
        banner = "=" * 72 + "\n"
        assert first.err.startswith(banner) and first.err.endswith(banner), first.err
        assert first.out == second.out == entry + "\n"
        assert "WARNING" not in second.err and key not in second.err
        assert ".dev-api-key" in second.err  # says which key it is using
        parsed = ApiKey.parse(entry)
        assert (parsed.name, parsed.role) == ("dev", "write")
        assert parsed.digest == hashlib.sha256(key.encode()).digest()
        assert (tmp_path / ".dev-api-key").stat().st_mode & 0o077 == 0

    def test_the_key_command_in_process(self, capsys):
        assert apikeys.main(["new", "carol", "read"]) == 0
        lines = capsys.readouterr().out.splitlines()
        key = lines[0].removeprefix("key:").strip()
        entry = lines[1].removeprefix("API_KEYS:").strip()
        assert lines[0].startswith("key: ") and lines[1].startswith("API_KEYS: ")
        assert entry == f"carol:read:{hashlib.sha256(key.encode()).hexdigest()}"
        assert lines[2] == (
            "Give the key to its user; put only the API_KEYS entry in the service's config."
        )

    @pytest.mark.parametrize(
        ("argv", "complaint"),
        [
            (["new", "carol", "admin"], "error: role must be read or write, not 'admin'"),
            (["new", "", "read"], "error: a key name must be non-empty, without ':' or ','"),
            (["new", "a:b", "read"], "error: a key name must be non-empty, without ':' or ','"),
            (["new", "a,b", "read"], "error: a key name must be non-empty, without ':' or ','"),
        ],
    )
    def test_the_key_command_refuses_what_api_keys_could_not_hold(self, argv, complaint, capsys):
        assert apikeys.main(argv) == 2
        assert capsys.readouterr().err.strip() == complaint

    @pytest.mark.parametrize("argv", [[], ["new", "carol"], ["old", "a", "b"], ["dev", "x"]])
    def test_the_key_command_explains_itself_when_called_wrongly(self, argv, capsys):
        assert apikeys.main(argv) == 2
        assert "python -m apikeys new NAME ROLE" in capsys.readouterr().err


def test_the_key_check_inspects_no_signature_per_request(client, monkeypatch):
    # connexion asks the spec's x-apikeyInfoFunc for its signature twice a request (does
    # it take required_scopes? request?): 4% of a GET, even with __signature__ set.
    # connexion_ext's key check asks once per operation, when the app is built.
    import inspect

    assert client.get("/v1/users?limit=1").status_code == 200  # views are built on first use
    asked = []
    original = inspect.signature

    def counting(function, *args, **kwargs):
        asked.append(function)
        return original(function, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)
    for _ in range(3):
        assert client.get("/v1/users?limit=1").status_code == 200
    assert asked == []


def _key_check(function, loc="header"):  # type: ignore[no-untyped-def]
    from connexion_ext.security import ApiKeyInHeader

    return ApiKeyInHeader()._get_verify_func(function, loc, "X-Key", ["write"])


class TestKeyCheck:
    """connexion_ext.security.ApiKeyInHeader answers as connexion's own API-key check."""

    def test_the_key_function_gets_the_key_and_the_keywords_it_names(self):
        calls = []

        def plain(key):
            calls.append(("plain", key))
            return {"sub": "a"}

        def scoped(key, required_scopes):
            calls.append(("scoped", key, required_scopes))
            return {"sub": "b"}

        def with_request(key, request):
            calls.append(("with_request", key, request.headers["x-key"]))
            return {"sub": "c"}

        def anything(key, **kwargs):
            calls.append(("anything", key, sorted(kwargs)))
            return {"sub": "d"}

        def positional(key, *required_scopes):  # a *args name is no keyword to pass
            calls.append(("positional", key, required_scopes))
            return {"sub": "e"}

        request = asgi_request([("X-Key", "k1")])
        checks = (plain, scoped, with_request, anything, positional)
        answers = [_key_check(f)(request) for f in checks]
        assert answers == [{"sub": s} for s in "abcde"]
        assert calls == [
            ("plain", "k1"),
            ("scoped", "k1", ["write"]),
            ("with_request", "k1", "k1"),
            ("anything", "k1", ["request", "required_scopes"]),
            ("positional", "k1", ()),
        ]

    def test_no_key_is_connexions_no_credentials_and_the_function_is_not_asked(self):
        from connexion.security import NO_VALUE

        asked = []
        assert settled(_key_check(asked.append)(asgi_request())) is NO_VALUE
        assert asked == []

    def test_a_key_the_function_refuses_is_a_401_and_what_it_raises_goes_through(self):
        from connexion.exceptions import Forbidden, OAuthResponseProblem
        from connexion.security import NO_VALUE

        request = asgi_request([("X-Key", "k1")])
        with pytest.raises(OAuthResponseProblem) as refused:
            _key_check(lambda key: None)(request)
        assert (refused.value.status, refused.value.detail) == (401, "Provided apikey is not valid")
        assert _key_check(lambda key: NO_VALUE)(request) is NO_VALUE

        def forbidding(key):
            raise Forbidden(detail="not you")

        with pytest.raises(Forbidden):
            _key_check(forbidding)(request)

    def test_an_async_function_or_an_awaitable_it_returns_is_awaited_and_checked(self):
        from connexion.exceptions import OAuthResponseProblem

        async def later(answer):
            return answer

        async def checking(key):
            return None if key == "bad" else {"sub": key}

        good, bad = asgi_request([("X-Key", "k1")]), asgi_request([("X-Key", "bad")])
        assert settled(_key_check(lambda key: later({"sub": key}))(good)) == {"sub": "k1"}
        assert settled(_key_check(lambda key: later(later({"sub": key})))(good)) == {"sub": "k1"}
        assert settled(_key_check(checking)(good)) == {"sub": "k1"}
        refusing = (lambda key: later(None), lambda key: later(later(None)), checking)
        for check in map(_key_check, refusing):
            with pytest.raises(OAuthResponseProblem) as refused:
                settled(check(bad))
            assert refused.value.detail == "Provided apikey is not valid"

    def test_a_key_in_the_query_is_left_to_connexion(self):
        both = asgi_request([("X-Key", "in-header")], query=b"X-Key=in-query")
        in_query = _key_check(lambda key, required_scopes: {key: required_scopes}, loc="query")
        assert settled(in_query(both)) == {"in-query": ["write"]}
