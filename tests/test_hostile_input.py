"""Hostile and oversized input: a 4xx problem every time, and nothing changes."""

import pytest

from tests.test_users_api import assert_problem, user_count

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def settings(settings):
    from dataclasses import replace

    return replace(settings, max_body_bytes=8192)


def test_a_declared_oversized_body_is_413_before_reading(client):
    body = b'{"name": "' + b"x" * 9000 + b'", "age": 3}'
    assert_problem(client.post("/v1/users", content=body, headers=JSON), 413)
    assert user_count(client) == 0


def test_a_chunked_oversized_body_is_413(client):
    def chunks():
        yield b'{"name": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'", "age": 3}'

    response = client.post("/v1/users", content=chunks(), headers=JSON)
    assert_problem(response, 413)
    assert user_count(client) == 0


def test_a_body_at_the_limit_is_read(client):
    name = "x" * 100
    body = f'{{"name": "{name}", "age": 3}}'.encode().ljust(8192)
    assert client.post("/v1/users", content=body, headers=JSON).status_code == 201


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(b'{"name": "\xff\xfe", "age": 3}', "UTF-8", id="invalid-utf8"),
        pytest.param(b'{"name": "Ada", "name": "Eve", "age": 3}', "repeats", id="duplicate-keys"),
        pytest.param(b'{"name": "Ada", "age": NaN}', "NaN", id="nan"),
        pytest.param(b'{"name": "Ada", "age": Infinity}', "Infinity", id="infinity"),
        pytest.param(b'{"name": "Ada", "age": ' + b"9" * 5000 + b"}", "JSON", id="5000-digits"),
        pytest.param(b"[" * 40 + b"]" * 40, "nested", id="nested-40"),
        pytest.param(b"[" * 900, "JSON", id="unclosed-900"),
        pytest.param(b'{"name": "Ada", "age": 3', "JSON", id="truncated"),
        pytest.param(b"\x00\x00\x00", "JSON", id="nul-bytes"),
    ],
)
def test_malformed_json_is_400(client, body, words):
    problem = assert_problem(client.post("/v1/users", content=body, headers=JSON), 400)
    assert words in problem["detail"]
    assert user_count(client) == 0


@pytest.mark.parametrize(
    "name",
    [rb"Ada\u0000Lovelace", rb"\ud800", b"x" * 101],
    ids=["nul", "lone-surrogate", "101-chars"],
)
def test_unstorable_names_are_400(client, name):
    body = b'{"name": "' + name + b'", "age": 3}'
    assert_problem(client.post("/v1/users", content=body, headers=JSON), 400)
    assert user_count(client) == 0


def test_a_100k_character_string_is_refused(client):
    response = client.post("/v1/users", json={"name": "x" * 100_000, "age": 3})
    assert response.status_code in (400, 413)
    assert_problem(response, response.status_code)


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


@pytest.mark.parametrize("spelling", NON_DECIMAL, ids=repr)
def test_an_id_in_the_path_is_plain_ascii_digits(client, spelling):
    # (connexion's router itself takes "+1" for 1: the one spelling left.)
    assert client.post("/v1/users", json={"name": "Ada", "age": 3}).json()["id"] == 1
    response = client.get(f"/v1/users/{spelling}")  # neither user 1 nor user 10
    assert_problem(response, 404 if response.status_code == 404 else 400)


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
