"""Hostile and oversized input: a 4xx problem every time, and nothing changes."""

import asyncio
import json
from contextlib import nullcontext
from dataclasses import replace

import pytest
from gevent import Timeout
from starlette.datastructures import Headers

from app import create_app
from connexion_ext import bridge
from middleware.body_guard import BodyLimitMiddleware
from tests.helpers import assert_problem, call_wsgi, user_count, wsgi_environ

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def settings(settings):
    return replace(settings, max_body_bytes=8192)


def test_a_declared_oversized_body_is_413_before_reading(client):
    body = b'{"name": "' + b"x" * 9000 + b'", "age": 3}'
    assert_problem(client.post("/v1/users", content=body, headers=JSON), 413)
    assert user_count(client) == 0


def test_a_streamed_body_is_counted_across_its_messages_and_no_further(settings):
    """Many small messages, none over the limit alone: the running total stops the read
    at the message that passes it, and the rest is never consumed."""
    messages = [{"type": "http.request", "body": b"x" * 1000, "more_body": True}] * 99
    messages.append({"type": "http.request", "body": b"x" * 1000, "more_body": False})
    received: list[dict] = []

    async def receive():
        received.append(messages[len(received)])
        return received[-1]

    async def never_called(scope, receive, send):
        raise AssertionError("an oversized body reached the app")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    guard = BodyLimitMiddleware(never_called, max_bytes=settings.max_body_bytes, timeout=30)
    scope = {"type": "http", "method": "POST", "path": "/v1/users", "headers": []}
    asyncio.run(guard(scope, receive, send))
    assert len(received) == 9  # 9 x 1000 bytes is the first total past 8192
    assert sent[0]["status"] == 413
    problem = json.loads(sent[1]["body"])
    assert problem["status"] == 413 and "8192 bytes" in problem["detail"]


def test_a_chunked_oversized_body_through_the_bridge_is_413_after_two_reads(settings, to_wsgi):
    """gunicorn hands a chunked body over as wsgi.input with no CONTENT_LENGTH; the
    bridge reads it 64 KiB at a time, so the limit sees several messages."""
    limit = 100_000
    app = create_app(replace(settings, max_body_bytes=limit))
    environ = wsgi_environ(
        "/v1/users",
        b'{"name": "' + b"x" * (5 * bridge.CHUNK) + b'", "age": 3}',
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    body = environ["wsgi.input"]
    status, _headers, answer = call_wsgi(to_wsgi(app), environ)
    store = app.app.extensions["user_store"]
    try:
        assert status == "413 Request Entity Too Large"
        assert f"{limit} bytes" in json.loads(answer)["detail"]
        assert body.tell() == 2 * bridge.CHUNK  # the first read past 100 000 bytes: the rest stays
        assert store.count() == 0
    finally:
        store.engine.dispose()


def test_a_body_at_the_limit_is_read(client):
    name = "x" * 100
    body = f'{{"name": "{name}", "age": 3}}'.encode().ljust(8192)
    assert client.post("/v1/users", content=body, headers=JSON).status_code == 201


NOT_JSON = "the body is not valid JSON: "


@pytest.mark.parametrize(
    ("body", "opening"),
    [
        pytest.param(
            b'{"name": "\xff\xfe", "age": 3}', "the body is not valid UTF-8.", id="invalid-utf8"
        ),
        pytest.param(
            b'{"name": "Ada", "name": "Eve", "age": 3}',
            "the body repeats the key(s) name.",
            id="duplicate-keys",
        ),
        pytest.param(b'{"name": "Ada", "age": NaN}', "NaN is not a JSON number.", id="nan"),
        pytest.param(
            b'{"name": "Ada", "age": Infinity}', "Infinity is not a JSON number.", id="infinity"
        ),
        pytest.param(
            b'{"name": "Ada", "age": ' + b"9" * 5000 + b"}",
            "the body holds a number of more than 4300 digits.",
            id="5000-digits",
        ),
        pytest.param(
            b"[" * 40 + b"]" * 40, "the body is nested deeper than 32 levels.", id="nested-40"
        ),
        pytest.param(  # past Python's recursion limit: json's parser gives up first
            b"[" * 4000 + b"]" * 4000,
            "the body is nested deeper than 32 levels.",
            id="nested-4000",
        ),
        pytest.param(b"[" * 900, NOT_JSON + "Expecting value", id="unclosed-900"),
        pytest.param(
            b'{"name": "Ada", "age": 3', NOT_JSON + "Expecting ',' delimiter", id="truncated"
        ),
        pytest.param(b"\x00\x00\x00", NOT_JSON + "Expecting value", id="nul-bytes"),
    ],
)
def test_malformed_json_is_400(client, body, opening):
    problem = assert_problem(client.post("/v1/users", content=body, headers=JSON), 400)
    assert problem["detail"].startswith(opening)
    # The body as a whole is what is wrong, in the same `errors` shape as every 400.
    [error] = problem["errors"]
    assert error["pointer"] == "" and problem["detail"].startswith(error["detail"])
    assert "sys." not in problem["detail"]  # no advice meant for Python programmers
    assert user_count(client) == 0


@pytest.mark.parametrize(
    "name",
    [rb"Ada\u0000Lovelace", rb"\ud800", b"x" * 101, rb"\u0000", rb" \u0000 "],
    ids=["nul", "lone-surrogate", "101-chars", "only-nul", "spaces-and-nul"],
)
def test_unstorable_names_are_400(client, name):
    body = b'{"name": "' + name + b'", "age": 3}'
    assert_problem(client.post("/v1/users", content=body, headers=JSON), 400)
    assert user_count(client) == 0


def test_a_100k_character_string_is_refused_by_its_size(client):
    response = client.post("/v1/users", json={"name": "x" * 100_000, "age": 3})
    assert "8192 bytes" in assert_problem(response, 413)["detail"]
    assert user_count(client) == 0


@pytest.mark.parametrize("age", [2**63, -(2**63), 10**30, 1e308, 3.0000001])
def test_out_of_range_numbers_are_400(client, age):
    assert_problem(client.post("/v1/users", json={"name": "Ada", "age": age}), 400)


@pytest.mark.parametrize(
    "query",
    ["limit=" + "9" * 5000, "after=" + "1" * 400, "a" * 3000 + "=1", "limit=%00", "limit=%ff"],
    ids=["5000-digit-limit", "400-digit-after", "3000-char-name", "nul", "invalid-utf8"],
)
def test_absurd_query_strings_are_400(client, query):
    assert_problem(client.get(f"/v1/users?{query}"), 400)


NON_DECIMAL = ["1_0", "%EF%BC%91", "%201", "1%20", "1.0", "0x1"]


@pytest.mark.parametrize("spelling", [*NON_DECIMAL, "+1"], ids=repr)
def test_integers_in_the_query_are_plain_ascii_digits(client, spelling):
    """Python's int() reads '1_0', full-width digits, signs and spaces; a URL may not."""
    assert_problem(client.get(f"/v1/users?limit={spelling}"), 400)


@pytest.mark.parametrize("spelling", [*NON_DECIMAL, "+1", "abc", "%E2%80%83"], ids=repr)
def test_an_id_in_the_path_is_plain_ascii_digits(client, spelling):
    assert client.post("/v1/users", json={"name": "Ada", "age": 3}).json()["id"] == 1
    response = client.get(f"/v1/users/{spelling}")  # neither user 1 nor user 10
    [error] = assert_problem(response, 400)["errors"]
    assert (error["parameter"], error["in"]) == ("user_id", "path")


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_a_malformed_id_is_checked_after_the_key(anonymous, method):
    assert_problem(anonymous.request(method, "/v1/users/abc"), 401)


def test_a_parameter_given_twice_is_400(client):
    problem = assert_problem(client.get("/v1/users?limit=1&limit=2"), 400)
    assert "limit" in problem["detail"]


def test_patch_with_hostile_body_changes_nothing(client):
    user = client.post("/v1/users", json={"name": "Ada", "age": 3})
    location = user.headers["location"]
    response = client.patch(
        location,
        content=b'{"age": 4, "age": 5}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert_problem(response, 400)
    assert client.get(location).json() == user.json()


@pytest.mark.parametrize(
    "content_type",
    [
        "APPLICATION/JSON; charset=utf-8",
        "application/json ; charset=utf-8",
        "application/json; charset=utf-8; profile=x",
        "application/x+json",
    ],
)
def test_every_spelling_of_a_json_media_type_is_parsed_strictly(client, content_type):
    body = b'{"name": "Ada", "name": "Eve", "age": 3}'
    response = client.post("/v1/users", content=body, headers={"Content-Type": content_type})
    assert assert_problem(response, 400)["detail"] == "the body repeats the key(s) name."
    assert user_count(client) == 0


def test_every_repeated_key_is_named_once_in_order(client):
    body = b'{"name": "Ada", "age": 3, "b": 1, "b": 2, "a": 0, "a": 1, "a": 2}'
    problem = assert_problem(client.post("/v1/users", content=body, headers=JSON), 400)
    assert problem["detail"] == "the body repeats the key(s) a, b."


@pytest.mark.parametrize(
    ("opening", "closing"), [(b"[", b"]"), (b'{"a": ', b"}")], ids=["arrays", "objects"]
)
def test_32_levels_of_nesting_are_parsed_and_33_are_refused(client, opening, closing):
    def nested(levels):
        return opening * levels + (b"1" if opening != b"[" else b"") + closing * levels

    deepest = assert_problem(client.post("/v1/users", content=nested(32), headers=JSON), 400)
    assert "nested" not in deepest["detail"]  # parsed, then refused by the schema
    too_deep = assert_problem(client.post("/v1/users", content=nested(33), headers=JSON), 400)
    assert too_deep["detail"] == "the body is nested deeper than 32 levels."


@pytest.mark.parametrize("body", [rb'{"\ud800": 1}', rb'["\ud800"]'], ids=["in-a-key", "in-a-list"])
def test_a_lone_surrogate_is_found_wherever_it_is(client, body):
    problem = assert_problem(client.post("/v1/users", content=body, headers=JSON), 400)
    assert problem["detail"] == "the body holds a lone UTF-16 surrogate (\\ud800-\\udfff)."


def test_a_read_with_an_untyped_body_is_not_parsed(client):
    """Only a write must say what its body is; a GET's body, untyped, is left unread."""
    response = client.request("GET", "/v1/users", content=b'{"a": 1, "a": 2}')
    assert response.status_code == 200, response.text


def test_an_unrouted_body_is_not_read(client):
    response = client.post("/v1/nothing", content=b'{"a": 1, "a": 2}', headers=JSON)
    assert assert_problem(response, 404)["detail"].startswith("There is nothing at this path")


def test_the_list_of_repeated_keys_is_cut_at_100_characters(client):
    keys = [f"{i:03}" + "k" * 16 for i in range(30)]  # 30 keys of 19 characters, each twice
    body = "{" + ", ".join(f'"{key}": 1, "{key}": 2' for key in keys) + "}"
    problem = assert_problem(client.post("/v1/users", content=body, headers=JSON), 400)
    listed = ", ".join(keys)[:99] + "…"
    assert problem["detail"] == f"the body repeats the key(s) {listed}."


def test_an_http1_request_without_length_or_chunks_is_not_read_as_having_a_body(settings):
    """RFC 9112, 6.3: no Content-Length and no Transfer-Encoding means no body, so the
    limit passes it on unread; HTTP/2 frames bodies without either, so that one is read."""
    reads: list[str] = []

    async def receive():
        reads.append("read")
        return {"type": "http.request", "body": b"", "more_body": False}

    async def app(scope, receive, send):
        reads.append("app")

    guard = BodyLimitMiddleware(app, max_bytes=settings.max_body_bytes, timeout=30)
    for version, expected in [("1.1", ["app"]), ("1.0", ["app"]), ("2", ["read", "app"])]:
        reads.clear()
        scope = {"type": "http", "method": "GET", "http_version": version, "headers": []}
        asyncio.run(guard(scope, receive, None))
        assert reads == expected, version
    reads.clear()
    scope = {"type": "http", "http_version": "1.1", "headers": [(b"content-length", b"0")]}
    asyncio.run(guard(scope, receive, None))
    assert reads == ["app"]


@pytest.mark.parametrize("declared", [b"\xb2", b"9" * 30], ids=["superscript-2", "30-digits"])
def test_a_content_length_that_is_not_a_plain_number_is_no_500(settings, declared):
    # Latin-1 "\xb2" is "²": str.isdigit() takes it, int() does not. (gunicorn refuses
    # such a Content-Length itself; other servers may pass it on.) The body is read and
    # limited as it arrives.
    seen: list[bytes] = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def app(scope, receive, send):
        seen.append((await receive())["body"])

    async def send(message):
        seen.append(message["type"].encode())

    guard = BodyLimitMiddleware(app, max_bytes=settings.max_body_bytes, timeout=30)
    headers = [(b"content-length", declared)]
    scope = {"type": "http", "method": "POST", "http_version": "1.1", "headers": headers}
    asyncio.run(guard(scope, receive, send))
    assert seen == (
        [b"{}"] if declared == b"\xb2" else [b"http.response.start", b"http.response.body"]
    )


def test_the_app_behind_the_limit_gets_the_body_once_then_the_clients_own_messages(settings):
    """The body is read ahead and handed on once; after it, the app waits on the client
    (a disconnect, say), not on the same body again."""
    messages = [
        {"type": "http.request", "body": b"{}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive():
        return messages.pop(0)

    seen: list[dict] = []

    async def app(scope, receive, send):
        seen.extend([await receive(), await receive()])

    guard = BodyLimitMiddleware(app, max_bytes=settings.max_body_bytes, timeout=30)
    headers = [(b"content-length", b"2")]
    scope = {"type": "http", "method": "POST", "http_version": "1.1", "headers": headers}
    asyncio.run(guard(scope, receive, None))
    assert [(message["type"], message.get("body")) for message in seen] == [
        ("http.request", b"{}"),
        ("http.disconnect", None),
    ]


@pytest.mark.parametrize(
    ("patched", "headers", "bounded"),
    [
        (True, [(b"content-length", b"10")], True),
        (True, [(b"transfer-encoding", b"chunked")], True),
        (True, [(b"content-length", b"0")], False),
        (True, [], False),
        (False, [(b"content-length", b"10")], False),
    ],
    ids=["gevent-length", "gevent-chunked", "gevent-empty", "gevent-unframed", "plain-length"],
)
def test_a_coming_body_is_read_under_a_gevent_deadline_of_body_timeout(
    monkeypatch, patched, headers, bounded
):
    """Under gevent (serving's workers) the read of a body that is coming gets a Timeout
    of BODY_TIMEOUT seconds; with no body coming, or in a plain process, nothing."""
    monkeypatch.setattr(
        "middleware.body_guard.is_module_patched", lambda module: patched and module == "socket"
    )
    guard = BodyLimitMiddleware(None, max_bytes=8192, timeout=2.5)
    deadline = guard._in_time(Headers(raw=headers))
    if bounded:
        assert isinstance(deadline, Timeout) and deadline.seconds == 2.5
    else:
        assert isinstance(deadline, nullcontext)


def test_a_body_that_does_not_arrive_in_time_is_a_408_that_closes(monkeypatch):
    # The read blocks the greenlet (as in serving's workers) until the deadline ends it.
    import gevent

    monkeypatch.setattr("middleware.body_guard.is_module_patched", lambda module: True)
    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"10")]}
    sent = []

    async def receive():  # type: ignore[no-untyped-def]
        gevent.sleep(5)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    async def nothing_after(*_args):  # type: ignore[no-untyped-def]
        raise AssertionError("the app must not be called")

    guard = BodyLimitMiddleware(nothing_after, max_bytes=8192, timeout=0.05)
    asyncio.run(guard(scope, receive, send))
    start, body = sent[0], sent[1]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(body["body"])["detail"] == "The body did not arrive within 0.05 seconds."


def test_another_timeout_passes_through_the_body_guard(monkeypatch):
    # Only the guard's own deadline is its 408; a Timeout someone else set is theirs.
    monkeypatch.setattr("middleware.body_guard.is_module_patched", lambda module: True)
    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"10")]}
    theirs = Timeout(5)

    async def receive():  # type: ignore[no-untyped-def]
        raise theirs

    guard = BodyLimitMiddleware(None, max_bytes=8192, timeout=30)
    with pytest.raises(Timeout) as raised:
        asyncio.run(guard(scope, receive, None))
    assert raised.value is theirs
