"""HTTP behaviour of every users operation, through the whole ASGI stack in process.

What the transport adds (gunicorn's framing of HEAD, 304 and 204, keep-alive, the
greenlet bridge) is checked over TCP in test_live.py.
"""

import json
import re
from dataclasses import replace

import pytest

from contract import METHODS, load_spec
from etags import if_match_versions
from settings import Settings
from tests.helpers import assert_problem, plain_id, user_count

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
# Whitespace as Python and JavaScript read it: none of these is a name.
BLANK_NAMES = [
    *(" ", "   ", "\t\n\r", "\u00a0", "\u2003\u3000", "\ufeff", "\x1c", "\u2028"),  # spaces
    *("\x01", "\x7f\x85", "\u200b\u200d", "\u2060", "\u00ad"),  # controls, zero-width, soft hyphen
    *("\u3164", "\u115f\u1160", "\ufe0f", "\u034f"),  # Hangul fillers, variation selector, CGJ
]


def create(client, name="Ada", age=36):
    response = client.post("/v1/users", json={"name": name, "age": age})
    assert response.status_code == 201, response.text
    return response


class TestCreate:
    def test_returns_the_user_with_location_and_etag(self, client):
        response = create(client, "Ada", 36)
        user = response.json()
        assert user["name"] == "Ada" and user["age"] == 36
        assert isinstance(user["id"], int) and user["id"] >= 1
        assert user["created_at"] == user["updated_at"]
        assert user["created_at"].endswith("Z")
        assert response.headers["location"] == f"/v1/users/{user['id']}"
        assert response.headers["etag"].startswith('"')

    def test_escaped_characters_are_read_as_the_characters(self, client):
        body = rb'{"name": "Jos\u00e9 \ud83d\ude00", "age": 3}'  # a surrogate pair: one emoji
        response = client.post(
            "/v1/users", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "José \U0001f600"

    def test_keeps_non_ascii_names_as_utf8(self, client):
        response = create(client, "张三", 20)
        assert "张三".encode() in response.content
        assert response.content.endswith(b"}\n") and b"\n" not in response.content[:-1]
        assert b"\\u" not in response.content

    @pytest.mark.parametrize(
        ("body", "named"),
        [
            ({"name": "Ada"}, "age"),
            ({"age": 3}, "name"),
            ({"name": "", "age": 3}, "name"),
            ({"name": "x" * 101, "age": 3}, "name"),
            ({"name": "Ada", "age": -1}, "age"),
            ({"name": "Ada", "age": 140}, "age"),
            ({"name": "Ada", "age": "3"}, "age"),
            ({"name": "Ada", "age": 3.5}, "age"),
            ({"name": None, "age": 3}, "name"),
            ({"name": "Ada", "age": 3, "id": 7}, "id"),
            ({"name": "Ada", "age": 3, "created_at": "2020-01-01T00:00:00Z"}, "created_at"),
            ({"name": "Ada", "age": 3, "nickname": "A"}, "nickname"),
            ([], "object"),
            ("Ada", "object"),
        ],
    )
    def test_rejects_invalid_bodies_and_stores_nothing(self, client, body, named):
        problem = assert_problem(client.post("/v1/users", json=body), 400)
        assert named in problem["detail"]
        assert user_count(client) == 0

    def test_accepts_the_age_bounds(self, client):
        assert create(client, age=0).json()["age"] == 0
        assert create(client, age=139).json()["age"] == 139

    @pytest.mark.parametrize("name", BLANK_NAMES, ids=plain_id)
    def test_a_name_needs_a_visible_character(self, client, name):
        response = client.post("/v1/users", json={"name": name, "age": 3})
        [error] = assert_problem(response, 400)["errors"]
        assert error["pointer"] == "/name" and "visible character" in error["detail"]
        assert user_count(client) == 0

    def test_the_name_pattern_never_backtracks(self):
        # ^[blank]*[visible][^NUL]*$: the leading run takes only what the visible
        # character cannot be, so a 64 KB name is matched in one pass. (The pattern it
        # replaced, ^[^NUL]*[visible][^NUL]*$, took 7 s of a worker for "a" * 60000 + NUL.)
        pattern = load_spec()["components"]["schemas"]["UserName"]["pattern"]
        match = re.fullmatch(r"\^(\[[^]]*\])\*(\[\^[^]]*\])\[\^\\u0000\]\*\$", pattern)
        assert match, pattern
        blank, visible = (re.compile(part) for part in match.groups())
        for code in range(1, 0x10000):
            char = chr(code)
            assert bool(blank.match(char)) != bool(visible.match(char)), hex(code)
        assert not blank.match("\0") and not visible.match("\0")

    @pytest.mark.parametrize("name", [" Ada ", "\u3000张三", "a\tb", "\u200ba"], ids=plain_id)
    def test_spaces_around_visible_characters_are_kept(self, client, name):
        assert create(client, name=name).json()["name"] == name

    def test_malformed_json_is_400(self, client):
        response = client.post(
            "/v1/users", content=b'{"name": "Ada",', headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 400)
        assert user_count(client) == 0

    def test_non_json_content_type_is_415(self, client):
        # Named without its parameters; Accept-Patch belongs to PATCH's 415 alone.
        plain = "text/plain;charset=utf-8; format=flowed"
        response = client.post(
            "/v1/users", content=b"name=Ada&age=3", headers={"Content-Type": plain}
        )
        problem = assert_problem(response, 415)
        assert problem["detail"] == (
            'This operation takes a body in application/json, not "text/plain".'
        )
        assert "accept-patch" not in response.headers
        assert user_count(client) == 0

    def test_ids_are_distinct_and_never_reused(self, client):
        first = create(client).json()["id"]
        assert client.delete(f"/v1/users/{first}").status_code == 204
        second = create(client).json()["id"]
        assert second > first


class TestRead:
    def test_returns_the_user_and_its_etag(self, client):
        created = create(client)
        response = client.get(created.headers["location"])
        assert response.status_code == 200
        assert response.json() == created.json()
        assert response.headers["etag"] == created.headers["etag"]

    def test_if_none_match_with_current_etag_is_304_without_body(self, client):
        created = create(client)
        etag = created.headers["etag"]
        response = client.get(created.headers["location"], headers={"If-None-Match": etag})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert "content-type" not in response.headers

    def test_if_none_match_with_old_etag_is_200(self, client):
        created = create(client)
        location = created.headers["location"]
        current = client.put(location, json={"name": "B", "age": 1})
        response = client.get(location, headers={"If-None-Match": created.headers["etag"]})
        assert response.status_code == 200
        assert response.json() == current.json()
        assert response.headers["etag"] == current.headers["etag"] != created.headers["etag"]

    def test_unknown_id_is_404(self, client):
        body = assert_problem(client.get("/v1/users/424242"), 404)
        assert "424242" in body["detail"]

    @pytest.mark.parametrize(
        "user_id",
        ["0", "-1", "99999999999999999999999", "9007199254740992", "abc", "1.5", "%20"],
    )
    def test_impossible_ids_are_400_naming_user_id(self, client, user_id):
        [error] = assert_problem(client.get(f"/v1/users/{user_id}"), 400)["errors"]
        assert (error["parameter"], error["in"]) == ("user_id", "path")

    def test_the_largest_id_a_javascript_client_holds_is_valid(self, client):
        assert_problem(client.get("/v1/users/9007199254740991"), 404)


class TestList:
    def test_empty_directory(self, client):
        response = client.get("/v1/users")
        assert response.status_code == 200
        assert response.json() == {"items": [], "count": 0, "limit": 20, "next": None}
        assert "link" not in response.headers

    def test_pages_follow_the_next_link_in_order(self, client):
        ids = [create(client, f"u{i}", i).json()["id"] for i in range(5)]
        seen, url = [], "/v1/users?limit=2"
        while url:
            response = client.get(url)
            assert response.status_code == 200
            page = response.json()
            assert page["count"] == 5 and page["limit"] == 2
            seen += [user["id"] for user in page["items"]]
            url = page["next"]
            if url:
                assert response.headers["link"] == f'<{url}>; rel="next"'
            else:
                assert "link" not in response.headers
        assert seen == ids

    def test_pages_neither_overlap_nor_skip_while_users_are_added(self, client):
        for i in range(3):
            create(client, f"u{i}", i)
        first = client.get("/v1/users?limit=2").json()
        create(client, "late", 1)
        second = client.get(first["next"]).json()
        names = [u["name"] for u in first["items"] + second["items"]]
        assert names == ["u0", "u1", "u2", "late"]

    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=101",
            "limit=x",
            "after=-1",
            "after=x",
            "after=9007199254740992",
            "colour=red",
        ],
    )
    def test_bad_query_is_400_naming_the_parameter(self, client, query):
        [error] = assert_problem(client.get(f"/v1/users?{query}"), 400)["errors"]
        assert (error["parameter"], error["in"]) == (query.split("=")[0], "query")

    def test_limit_bounds_are_accepted(self, client):
        ids = [create(client, f"u{i}", i).json()["id"] for i in range(2)]
        one = client.get("/v1/users?limit=1").json()
        assert (one["limit"], [u["id"] for u in one["items"]]) == (1, ids[:1])
        assert one["next"] == f"/v1/users?limit=1&after={ids[0]}"
        hundred = client.get("/v1/users?limit=100").json()
        assert (hundred["limit"], [u["id"] for u in hundred["items"]]) == (100, ids)
        assert hundred["next"] is None


class TestReplace:
    def test_replaces_every_field_and_changes_the_etag(self, client):
        created = create(client, "Ada", 36)
        response = client.put(created.headers["location"], json={"name": "Grace", "age": 85})
        assert response.status_code == 200
        user = response.json()
        assert (user["name"], user["age"]) == ("Grace", 85)
        assert user["id"] == created.json()["id"]
        assert user["created_at"] == created.json()["created_at"]
        assert user["updated_at"] > user["created_at"]
        assert response.headers["etag"] != created.headers["etag"]
        assert client.get(created.headers["location"]).json() == user

    @pytest.mark.parametrize(
        "body",
        [{"name": "Grace"}, {"name": "Grace", "age": 140}, {"name": "G", "age": 1, "id": 99}, {}],
    )
    def test_is_validated_like_create_and_changes_nothing(self, client, body):
        created = create(client)
        assert_problem(client.put(created.headers["location"], json=body), 400)
        assert client.get(created.headers["location"]).json() == created.json()

    def test_unknown_id_is_404(self, client):
        assert_problem(client.put("/v1/users/999", json={"name": "G", "age": 1}), 404)
        assert user_count(client) == 0

    @pytest.mark.parametrize("name", BLANK_NAMES, ids=plain_id)
    def test_a_name_needs_a_visible_character(self, client, name):
        created = create(client)
        response = client.put(created.headers["location"], json={"name": name, "age": 3})
        assert_problem(response, 400)
        assert client.get(created.headers["location"]).json() == created.json()


class TestPatch:
    def test_merges_present_fields_only(self, client):
        created = create(client, "Ada", 36)
        response = client.patch(
            created.headers["location"], content=b'{"age": 37}', headers=MERGE_PATCH
        )
        assert response.status_code == 200
        assert (response.json()["name"], response.json()["age"]) == ("Ada", 37)

    def test_empty_patch_changes_nothing(self, client):
        created = create(client)
        response = client.patch(created.headers["location"], content=b"{}", headers=MERGE_PATCH)
        assert response.status_code == 200
        assert response.json() == created.json()
        assert response.headers["etag"] == created.headers["etag"]

    @pytest.mark.parametrize(
        "content",
        [b'{"name": null}', b'{"age": null}', b'{"age": 200}', b'{"id": 3}', b"[]", b'{"name":'],
    )
    def test_invalid_result_is_400_and_changes_nothing(self, client, content):
        created = create(client)
        response = client.patch(created.headers["location"], content=content, headers=MERGE_PATCH)
        assert_problem(response, 400)
        assert client.get(created.headers["location"]).json() == created.json()

    @pytest.mark.parametrize("name", BLANK_NAMES, ids=plain_id)
    def test_a_name_needs_a_visible_character(self, client, name):
        created = create(client)
        content = json.dumps({"name": name}).encode()
        response = client.patch(created.headers["location"], content=content, headers=MERGE_PATCH)
        assert_problem(response, 400)
        assert client.get(created.headers["location"]).json() == created.json()

    def test_plain_json_is_415_naming_the_patch_format(self, client):
        created = create(client)
        response = client.patch(created.headers["location"], json={"age": 1})
        problem = assert_problem(response, 415)
        assert "application/merge-patch+json" in problem["detail"]
        assert '"application/json"' in problem["detail"]
        assert response.headers["accept-patch"] == "application/merge-patch+json"  # RFC 5789
        assert client.get(created.headers["location"]).json() == created.json()

    def test_unknown_id_is_404(self, client):
        response = client.patch("/v1/users/999", content=b'{"age": 1}', headers=MERGE_PATCH)
        assert "999" in assert_problem(response, 404)["detail"]
        assert user_count(client) == 0


class TestDelete:
    def test_deletes_that_user_only(self, client):
        first, second = create(client, "Ada").json(), create(client, "Eve").json()
        assert client.delete(f"/v1/users/{first['id']}").status_code == 204
        assert client.get("/v1/users").json()["items"] == [second]
        assert client.delete(f"/v1/users/{second['id']}", headers={"If-Match": '"1"'}).is_success
        assert user_count(client) == 0

    def test_then_get_and_delete_are_404(self, client):
        location = create(client).headers["location"]
        response = client.delete(location)
        assert response.status_code == 204
        assert response.content == b""
        assert "content-type" not in response.headers
        assert_problem(client.get(location), 404)
        assert_problem(client.delete(location), 404)

    def test_unknown_id_is_404(self, client):
        assert "31337" in assert_problem(client.delete("/v1/users/31337"), 404)["detail"]


class TestIfMatch:
    """Concurrent editors: a write based on an old read loses nothing, it gets 412."""

    def test_matching_etag_lets_every_write_through(self, client):
        created = create(client)
        location, etag = created.headers["location"], created.headers["etag"]
        put = client.put(location, json={"name": "B", "age": 2}, headers={"If-Match": etag})
        assert put.status_code == 200
        assert client.get(location).json() == put.json()
        assert (put.json()["name"], put.json()["age"]) == ("B", 2)
        patch = client.patch(
            location,
            content=b'{"age": 3}',
            headers={**MERGE_PATCH, "If-Match": put.headers["etag"]},
        )
        assert patch.status_code == 200
        assert client.get(location).json() == patch.json()
        assert (patch.json()["name"], patch.json()["age"]) == ("B", 3)
        delete = client.delete(location, headers={"If-Match": patch.headers["etag"]})
        assert delete.status_code == 204
        assert_problem(client.get(location), 404)

    def test_stale_etag_is_412_for_every_write_and_changes_nothing(self, client):
        created = create(client)
        location, stale = created.headers["location"], created.headers["etag"]
        current = client.put(location, json={"name": "Second", "age": 2}).json()
        headers = {"If-Match": stale}
        assert_problem(client.put(location, json={"name": "C", "age": 3}, headers=headers), 412)
        response = client.patch(location, content=b'{"age": 4}', headers={**MERGE_PATCH, **headers})
        assert_problem(response, 412)
        assert_problem(client.delete(location, headers=headers), 412)
        assert client.get(location).json() == current

    def test_star_and_lists_match_the_current_version(self, client):
        created = create(client)
        location, etag = created.headers["location"], created.headers["etag"]
        star = client.put(location, json={"name": "B", "age": 2}, headers={"If-Match": "*"})
        assert star.status_code == 200 and star.json()["name"] == "B"
        listed = f'"999", {star.headers["etag"]}'
        named = client.put(location, json={"name": "C", "age": 3}, headers={"If-Match": listed})
        assert named.status_code == 200
        assert client.get(location).json() == named.json()
        assert (named.json()["name"], named.json()["age"]) == ("C", 3)
        assert len({etag, star.headers["etag"], named.headers["etag"]}) == 3

    def test_the_412_says_which_conditions_failed(self, client):
        created = create(client)
        response = client.delete(created.headers["location"], headers={"If-None-Match": "*"})
        assert assert_problem(response, 412)["detail"] == (
            f"User {created.json()['id']}'s current ETag is not one If-Match names (it changed"
            " since it was read), or is one If-None-Match names. Read it again before deciding."
        )

    @pytest.mark.parametrize(
        ("method", "kwargs"),
        [
            ("PATCH", {"content": b"{}", "headers": MERGE_PATCH}),  # no change: checked only
            ("PATCH", {"content": b'{"age": 4}', "headers": MERGE_PATCH}),
            ("PUT", {"json": {"name": "B", "age": 2}}),
            ("DELETE", {}),
            ("GET", {}),
        ],
        ids=["empty-patch", "patch", "put", "delete", "read"],
    )
    def test_the_412_names_the_user(self, client, method, kwargs):
        user_id = create(client).json()["id"]
        kwargs = dict(kwargs)  # the parameter is shared by every run of the test
        headers = {**kwargs.pop("headers", {}), "If-Match": '"7"'}
        response = client.request(method, f"/v1/users/{user_id}", headers=headers, **kwargs)
        assert assert_problem(response, 412)["detail"].startswith(f"User {user_id}'s current ETag")

    def test_weak_etag_never_matches_if_match(self, client):
        created = create(client)
        weak = "W/" + created.headers["etag"]
        response = client.put(
            created.headers["location"], json={"name": "B", "age": 2}, headers={"If-Match": weak}
        )
        assert_problem(response, 412)

    @pytest.mark.parametrize(
        "tag",
        [
            '"' + "1" * 5000 + '"',
            '"99999999999999999999999"',
            '"9223372036854775808"',
            '"-1"',
            '"01"',
        ],
        ids=["5000-digits", "23-digits", "int64-max-plus-one", "negative", "leading-zero"],
    )
    def test_a_tag_no_version_can_have_is_412_and_changes_nothing(self, client, tag):
        created = create(client)
        location, headers = created.headers["location"], {"If-Match": tag}
        assert_problem(client.put(location, json={"name": "B", "age": 2}, headers=headers), 412)
        response = client.patch(location, content=b'{"age": 4}', headers={**MERGE_PATCH, **headers})
        assert_problem(response, 412)
        assert_problem(client.delete(location, headers=headers), 412)
        assert client.get(location).json() == created.json()

    def test_the_largest_version_a_tag_can_name_is_int64_max(self):
        assert if_match_versions('"9223372036854775807", "9223372036854775808"') == {2**63 - 1}

    def test_unknown_id_with_if_match_is_404(self, client):
        response = client.delete("/v1/users/999", headers={"If-Match": '"1"'})
        assert "999" in assert_problem(response, 404)["detail"]


class TestIfNoneMatchOnWrites:
    """RFC 9110, 13.1.2: a write that names the current version in If-None-Match is 412."""

    @pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
    @pytest.mark.parametrize("tag", ["current", "weak-current", "*"])
    def test_a_matching_if_none_match_is_412_and_changes_nothing(self, client, method, tag):
        created = create(client)
        location, etag = created.headers["location"], created.headers["etag"]
        headers = {"If-None-Match": {"current": etag, "weak-current": "W/" + etag, "*": "*"}[tag]}
        body = {
            "PUT": {"json": {"name": "B", "age": 2}},
            "PATCH": {"content": b'{"age": 4}'},
            "DELETE": {},
        }[method]
        if method == "PATCH":
            headers.update(MERGE_PATCH)
        response = client.request(method, location, headers=headers, **body)
        assert_problem(response, 412)
        assert client.get(location).json() == created.json()

    def test_an_old_tag_in_if_none_match_lets_the_write_through(self, client):
        created = create(client)
        location = created.headers["location"]
        current = client.put(location, json={"name": "B", "age": 2})
        response = client.put(
            location,
            json={"name": "C", "age": 3},
            headers={"If-None-Match": created.headers["etag"]},
        )
        assert response.status_code == 200
        assert response.headers["etag"] != current.headers["etag"]
        assert client.get(location).json() == response.json()
        assert (response.json()["name"], response.json()["age"]) == ("C", 3)


class TestRequireIfMatch:
    """REQUIRE_IF_MATCH=true: a write that does not say which version it read is 428."""

    @pytest.fixture
    def settings(self, settings):
        return replace(settings, require_if_match=True)

    @pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
    def test_a_write_without_if_match_is_428_and_changes_nothing(self, client, method):
        created = create(client)
        location = created.headers["location"]
        body = {
            "PUT": {"json": {"name": "B", "age": 2}},
            "PATCH": {"content": b'{"age": 4}', "headers": MERGE_PATCH},
            "DELETE": {},
        }[method]
        problem = assert_problem(client.request(method, location, **body), 428)
        assert problem["detail"] == (
            "This service requires If-Match on every change (REQUIRE_IF_MATCH): read the user,"
            " then send its ETag in If-Match, so a change made since you read it is not lost."
        )
        assert client.get(location).json() == created.json()
        if_match = {"If-Match": created.headers["etag"]}
        body["headers"] = {**body.get("headers", {}), **if_match}
        assert client.request(method, location, **body).is_success

    def test_an_if_none_match_alone_is_not_enough(self, client):
        created = create(client)
        response = client.put(
            created.headers["location"],
            json={"name": "B", "age": 2},
            headers={"If-None-Match": '"999"'},
        )
        assert_problem(response, 428)

    def test_creates_and_reads_need_no_if_match(self, client):
        location = create(client).headers["location"]
        assert client.get(location).status_code == 200

    def test_it_is_off_unless_set(self):
        assert Settings.from_env({}).require_if_match is False
        assert Settings.from_env({"REQUIRE_IF_MATCH": "true"}).require_if_match is True


class TestIfMatchOnRead:
    def test_a_read_naming_another_version_in_if_match_is_412(self, client):
        created = create(client)
        location = created.headers["location"]
        assert_problem(client.get(location, headers={"If-Match": '"999"'}), 412)
        response = client.get(location, headers={"If-Match": created.headers["etag"]})
        assert response.status_code == 200
        assert response.json() == created.json()
        star = client.get(location, headers={"If-Match": "*"})
        assert star.status_code == 200
        assert star.json() == created.json()


class TestProtocolErrors:
    @pytest.mark.parametrize("path", ["/v1/users/{id}", "/v1/users", "/v1", "/healthz", "/readyz"])
    def test_head_answers_like_get_without_a_body(self, client, path):
        path = path.format(id=create(client).json()["id"])
        get, head = client.get(path), client.head(path)
        assert head.status_code == 200, head.text
        assert head.content == b""
        for name in ("content-type", "content-length", "etag"):
            assert head.headers.get(name) == get.headers.get(name)

    def test_unknown_path_is_404_problem(self, client):
        assert_problem(client.get("/v1/nothing-here"), 404)
        assert_problem(client.get("/elsewhere"), 404)

    @pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
    def test_a_body_without_content_type_is_415_and_changes_nothing(self, client, method):
        created = create(client)
        path = "/v1/users" if method == "POST" else created.headers["location"]
        response = client.request(method, path, content=b'{"name": "B", "age": 2}')
        assert assert_problem(response, 415)["detail"] == (
            "The body has no Content-Type header; send the media type it is in."
        )
        assert user_count(client) == 1
        assert client.get(created.headers["location"]).json() == created.json()

    def test_doubled_slashes_are_404_and_change_nothing(self, client):
        created = create(client).json()
        assert_problem(client.get("/v1//users"), 404)
        assert_problem(client.delete(f"/v1/users//{created['id']}"), 404)
        assert client.get(f"/v1/users/{created['id']}").json() == created

    def test_trailing_slashes_are_404_not_redirects(self, client):
        user_id = create(client).json()["id"]
        for path in ("/v1/", "/v1/users/", f"/v1/users/{user_id}/"):
            assert_problem(client.get(path, follow_redirects=False), 404)
        assert_problem(client.post("/v1/users/", json={"name": "B", "age": 2}), 404)
        assert user_count(client) == 1

    def test_every_path_documents_head_wherever_it_has_get(self):
        for path, item in load_spec()["paths"].items():
            assert ("get" in item) == ("head" in item), path

    @pytest.mark.parametrize("path", ["/v1", "/v1/users", "/v1/users/1", "/healthz", "/readyz"])
    def test_405_allows_exactly_the_documented_methods(self, client, path):
        template = "/v1/users/{user_id}" if path == "/v1/users/1" else path
        documented = {m.upper() for m in load_spec()["paths"][template] if m in METHODS}
        unlisted = ({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} - documented).pop()
        response = client.request(unlisted, path)
        assert_problem(response, 405)
        assert {m.strip() for m in response.headers["allow"].split(",")} == documented

    def test_wrong_method_is_405_with_allow(self, client):
        location = create(client).headers["location"]
        response = client.post(location, json={})
        assert_problem(response, 405)
        assert {"GET", "PUT", "PATCH", "DELETE"} <= {
            m.strip() for m in response.headers["allow"].split(",")
        }
        assert_problem(client.delete("/v1/users"), 405)

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("DELETE", "/v1/users", "GET, POST, HEAD"),
            ("POST", "/v1/users/1", "GET, PUT, PATCH, DELETE, HEAD"),
            ("POST", "/v1", "GET, HEAD"),
            ("POST", "/healthz", "GET, HEAD"),
            ("POST", "/v1/openapi.json", "GET, HEAD"),  # not in the contract: starlette's
        ],
    )
    def test_allow_lists_every_method_of_the_path(self, client, method, path, allowed):
        response = client.request(method, path)
        assert_problem(response, 405)
        assert sorted(response.headers["allow"].split(", ")) == sorted(allowed.split(", "))


class TestRoot:
    def test_describes_the_api_and_counts_users(self, client):
        create(client)
        create(client)
        body = client.get("/v1").json()
        assert body["description"] == "users-api: a directory of users"
        assert body["user_count"] == 2
        links = {(link["method"], link["href"]) for link in body["links"]}
        assert ("POST", "/v1/users") in links
        assert ("PATCH", "/v1/users/{user_id}") in links
        assert all(link["description"] for link in body["links"])

    def test_spec_and_swagger_ui_are_served(self, client):
        spec = client.get("/v1/openapi.json")
        assert spec.status_code == 200
        assert spec.json()["info"]["title"] == "users-api"
        ui = client.get("/v1/ui/")
        assert ui.status_code == 200
        assert "swagger-ui" in ui.text
