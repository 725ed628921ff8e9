"""Every 400 says how to fix the request: each problem, where it is, in plain words.

The shape is the spec's (Problem.errors, ProblemError), and response validation is on,
so connexion checks each document below against it as well.
"""

import asyncio
import json

import pytest
from connexion.exceptions import ProblemException, UnsupportedMediaTypeProblem
from connexion.lifecycle import ConnexionRequest
from jsonschema import Draft4Validator

from connexion_ext.internals import ROUTING_CONTEXT
from connexion_ext.messages import body_entries, echo
from connexion_ext.routing import AnySegment
from contract import load_spec
from logging_ext.setup import configure_logging
from problems import (
    SERVER_FAILED,
    ProblemBoundary,
    UnsupportedMedia,
    contract_problem,
    undecodable,
)
from problems import init_app as use_problem_documents
from tests.helpers import assert_problem, log_lines, user_count

JSON = {"Content-Type": "application/json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def problems(response):  # type: ignore[no-untyped-def]
    """The 400's `errors`, checked for the spec's shape."""
    body = assert_problem(response, 400)
    assert body["title"] == "Bad Request" and body["errors"], body
    for entry in body["errors"]:
        assert entry["detail"]
        assert ("pointer" in entry) != ("parameter" in entry), entry
        assert ("parameter" in entry) == ("in" in entry), entry
    return body["errors"]


class TestParameters:
    def test_a_malformed_id_is_401_without_a_key_and_400_naming_user_id_with_one(
        self, client, anonymous
    ):
        assert_problem(anonymous.get("/v1/users/abc"), 401)
        assert_problem(anonymous.delete("/v1/users/abc"), 401)
        for method in ("GET", "DELETE"):
            errors = problems(client.request(method, "/v1/users/abc"))
            assert errors == [
                {
                    "parameter": "user_id",
                    "in": "path",
                    "detail": 'user_id must be an integer in decimal digits, not "abc"',
                }
            ]

    def test_an_id_below_the_minimum_names_user_id(self, client, anonymous):
        assert_problem(anonymous.get("/v1/users/0"), 401)
        assert problems(client.get("/v1/users/0")) == [
            {"parameter": "user_id", "in": "path", "detail": "user_id must be at least 1, not 0"}
        ]

    def test_every_bad_query_parameter_is_named(self, client):
        response = client.get("/v1/users?limit=0&after=-1&colour=red")
        errors = problems(response)
        assert {(e["parameter"], e["in"]) for e in errors} == {
            ("limit", "query"),
            ("after", "query"),
            ("colour", "query"),
        }
        details = {e["parameter"]: e["detail"] for e in errors}
        assert details["limit"] == "limit must be at least 1, not 0"
        assert details["after"] == "after must be at least 0, not -1"
        assert "limit, after" in details["colour"]
        assert response.json()["detail"].startswith("3 problems: ")

    def test_a_value_past_any_bound_is_told_as_the_bound(self, client):
        # More digits than any bound has: not converted, just told which bound it breaks.
        huge, below = "9" * 5000, "-" + "9" * 40
        [too_big] = problems(client.get(f"/v1/users?limit={huge}"))
        assert too_big == {
            "parameter": "limit",
            "in": "query",
            "detail": f'limit must be at most 100, not "{huge[:98]}…',
        }
        [too_small] = problems(client.get(f"/v1/users?after={below}"))
        assert too_small["detail"] == f'after must be at least 0, not "{below}"'

    def test_an_operation_without_query_parameters_says_so(self, client):
        [error] = problems(client.get("/v1/users/1?colour=red"))
        assert error == {
            "parameter": "colour",
            "in": "query",
            "detail": "colour is not a query parameter of this operation (they are none)",
        }

    def test_a_repeated_parameter_is_named(self, client):
        assert problems(client.get("/v1/users?limit=1&limit=2")) == [
            {"parameter": "limit", "in": "query", "detail": "limit is given 2 times; give it once"}
        ]

    def test_a_long_unknown_name_is_cut(self, client):
        errors = problems(client.get("/v1/users?" + "a" * 3000 + "=1"))
        assert len(errors[0]["parameter"]) == 100
        assert len(json.dumps(errors)) < 500


class TestBody:
    def test_bounds_are_plain_english(self, client):
        assert problems(client.post("/v1/users", json={"name": "Ada", "age": 140})) == [
            {"pointer": "/age", "detail": "age must be at most 139, not 140"}
        ]
        assert problems(client.post("/v1/users", json={"name": "Ada", "age": -1})) == [
            {"pointer": "/age", "detail": "age must be at least 0, not -1"}
        ]

    def test_every_problem_is_listed_with_its_pointer_and_json_values(self, client):
        response = client.post("/v1/users", json={"name": None, "age": True})
        assert problems(response) == [
            {"pointer": "/name", "detail": "name must be a string, not null"},
            {"pointer": "/age", "detail": "age must be an integer, not true"},
        ]
        assert response.json()["detail"] == (
            "2 problems: name must be a string, not null; age must be an integer, not true."
        )

    def test_the_wrong_kind_of_body_is_shown_as_json(self, client):
        assert problems(client.post("/v1/users", json=[{"name": "a"}])) == [
            {"pointer": "", "detail": 'the body must be an object, not [{"name": "a"}]'}
        ]

    def test_missing_and_unknown_fields_each_have_their_pointer(self, client):
        errors = problems(client.post("/v1/users", json={"nickname": "A", "a/b~": 1}))
        assert {e["pointer"] for e in errors} == {"/name", "/age", "/nickname", "/a~1b~0"}
        details = {e["pointer"]: e["detail"] for e in errors}
        assert details["/name"] == "name is required"
        assert details["/nickname"] == "nickname is not a field here (the fields are name, age)"

    def test_a_null_body_is_said_to_be_null(self, client):
        for method, path, headers in (
            ("POST", "/v1/users", JSON),
            ("PUT", "/v1/users/1", JSON),
            ("PATCH", "/v1/users/1", MERGE_PATCH),
        ):
            response = client.request(method, path, content=b"null", headers=headers)
            assert problems(response) == [
                {"pointer": "", "detail": "the body must be an object, not null"}
            ]

    def test_a_missing_body_is_said_to_be_missing(self, client):
        for method in ("POST", "PUT"):
            path = "/v1/users" if method == "POST" else "/v1/users/1"
            response = client.request(method, path, content=b"", headers=JSON)
            assert problems(response) == [
                {"pointer": "", "detail": "the request has no body; this operation needs one"}
            ]

    def test_a_long_value_is_never_echoed_whole(self, client):
        response = client.post("/v1/users", json={"name": ["x" * 60_000], "age": 3})
        [error] = problems(response)
        assert error["pointer"] == "/name"
        assert error["detail"].startswith('name must be a string, not ["xxx')
        assert len(error["detail"]) <= len("name must be a string, not ") + 100
        assert len(response.content) < 1000

    def test_a_long_field_name_is_cut_in_its_pointer_too(self, client):
        for name in ("k" * 60_000, "/" * 30_000):  # each "/" is "~1" in a pointer
            response = client.post("/v1/users", json={"name": "Ada", "age": 3, name: 1})
            [error] = problems(response)
            assert len(error["pointer"]) == 100
            assert error["pointer"].endswith("…")
            assert len(response.content) < 1000

    def test_a_long_string_says_its_length_not_its_value(self, client):
        response = client.post("/v1/users", json={"name": "x" * 60_000, "age": 3}, headers=JSON)
        [error] = problems(response)
        assert error == {
            "pointer": "/name",
            "detail": "name must be at most 100 characters long; it has 60000",
        }
        assert len(response.content) < 1000

    def test_three_problems_are_all_shown(self, client):
        response = client.post("/v1/users", json={"name": "Ada", "age": 3, "a": 1, "b": 2, "c": 3})
        assert response.json()["detail"] == (
            "3 problems: a is not a field here (the fields are name, age);"
            " b is not a field here (the fields are name, age);"
            " c is not a field here (the fields are name, age)."
        )

    def test_four_problems_show_three_and_say_there_are_more(self, client):
        body = {"name": "Ada", "age": 3, "a": 1, "b": 2, "c": 3, "d": 4}
        response = client.post("/v1/users", json=body)
        assert len(problems(response)) == 4
        assert response.json()["detail"] == (
            "4 problems: a is not a field here (the fields are name, age);"
            " b is not a field here (the fields are name, age);"
            " c is not a field here (the fields are name, age); and more, listed in errors."
        )

    def test_twenty_problems_are_all_listed(self, client):
        body = {f"field{i}": i for i in range(20)}
        response = client.post("/v1/users", json={"name": "Ada", "age": 3, **body})
        assert len(problems(response)) == 20
        assert response.json()["detail"].startswith("20 problems: ")

    def test_an_object_where_a_string_belongs_is_said_so(self, client):
        errors = problems(client.post("/v1/users", json={"name": {"first": "A"}, "age": 3}))
        assert errors == [
            {"pointer": "/name", "detail": 'name must be a string, not {"first": "A"}'}
        ]

    def test_errors_are_capped_and_the_detail_counts_them_all(self, client):
        body = {f"field{i}": i for i in range(30)}
        response = client.post("/v1/users", json={"name": "Ada", "age": 3, **body})
        assert len(problems(response)) == 20
        assert response.json()["detail"].startswith("30 problems (errors lists the first 20): ")
        assert user_count(client) == 0

    def test_a_chunked_body_without_content_length_is_read(self, client):
        def chunks():  # httpx sends a generator with Transfer-Encoding: chunked
            yield b'{"name": "Ada",'
            yield b' "age": 36}'

        response = client.post("/v1/users", content=chunks(), headers=JSON)
        assert response.status_code == 201, response.text


def test_a_client_text_with_blank_lines_is_quoted_whole(client):
    # The details are ours: nothing after a blank line is cut as if it were jsonschema's.
    name = "nick\n\nname"
    response = client.post("/v1/users", json={"name": "Ada", "age": 3, name: 1})
    [error] = problems(response)
    assert error["detail"].startswith(f"{name} is not a field here")
    assert response.json()["detail"].startswith(f"{name} is not a field here")


def test_an_answer_that_breaks_the_contract_is_a_plain_500_and_logged(app, client, capsys):
    # A row the contract cannot hold (written past the API): response validation stops
    # the answer, and the client learns nothing of the schema, only the request id.
    # The value holds connexion's " - '" separator too: where is the last one.
    store = app.app.extensions["user_store"]
    name = "private - 'value" + "x" * 101
    user = store.create(name=name, age=3)
    capsys.readouterr()
    response = client.get(f"/v1/users/{user.id}")
    body = assert_problem(response, 500)
    assert body["detail"] == SERVER_FAILED
    assert "errors" not in body and "schema" not in response.text
    logged = log_lines(capsys)
    [broken] = [line for line in logged if line["event"] == "answer breaks the contract"]
    assert (broken["level"], broken["at"]) == ("error", "name")
    assert broken["request_id"] == body["request_id"]
    assert "private" not in json.dumps(logged)  # the user's data stays out of the log


@pytest.mark.parametrize(
    ("detail", "at"),
    [
        ("'private' is too long - 'name'", "name"),
        ("'private' is not of type 'integer' - 'items/0/AX'", "items/0/AX"),
        ("'private' is too long", ""),  # no path given: none logged, and no value
    ],
)
def test_the_contract_break_log_says_where_and_never_the_value(capsys, detail, at):
    configure_logging(level="INFO", log_format="json")  # as the app sets it up
    capsys.readouterr()
    answer = asyncio.run(contract_problem(None, ProblemException(status=500, detail=detail)))  # type: ignore[arg-type]
    assert json.loads(answer.body)["detail"] == SERVER_FAILED
    [line] = log_lines(capsys)
    assert (line["event"], line["at"]) == ("answer breaks the contract", at)
    assert "private" not in json.dumps(line)


def test_a_problem_without_a_detail_says_its_title():
    raised = ProblemException(status=401, title="Unauthorized")
    answer = asyncio.run(contract_problem(None, raised))  # type: ignore[arg-type]
    assert json.loads(answer.body)["detail"] == "Unauthorized"


def test_a_problem_keeps_the_headers_it_was_raised_with():
    raised = ProblemException(status=429, detail="Slow down.", headers={"Retry-After": "3"})
    answer = asyncio.run(contract_problem(None, raised))  # type: ignore[arg-type]
    assert answer.headers["Retry-After"] == "3"
    assert answer.content_type == "application/problem+json"


def test_a_problem_is_utf8_not_escaped(client):
    response = client.post("/v1/users", json={"name": "Ada", "age": 3, "张三": 1})
    assert "张三 is not a field here".encode() in response.content


def test_a_415_lists_every_media_type_the_operation_takes():
    # Today's contract takes one media type per operation; a second is listed too.

    body = {"content": {"application/json": {}, "text/csv": {}}}
    spec = {"paths": {"/x": {"patch": {"operationId": "op", "requestBody": body}}}}
    scope = {
        "type": "http",
        "method": "PATCH",
        "headers": [(b"content-type", b"text/plain")],
        "extensions": {ROUTING_CONTEXT: {"operation_id": "handlers.x.op"}},
    }
    answer = asyncio.run(
        UnsupportedMedia(spec).answer(ConnexionRequest(scope), UnsupportedMediaTypeProblem())
    )
    assert answer.status_code == 415
    assert answer.headers["Accept-Patch"] == "application/json, text/csv"
    assert json.loads(answer.body)["detail"] == (
        'This operation takes a body in application/json or text/csv, not "text/plain".'
    )


def test_the_spec_documents_the_errors_member():
    schemas = load_spec()["components"]["schemas"]
    errors = schemas["Problem"]["properties"]["errors"]
    assert errors["items"] == {"$ref": "#/components/schemas/ProblemError"}
    assert set(schemas["ProblemError"]["properties"]) == {"pointer", "parameter", "in", "detail"}


@pytest.mark.parametrize("method", ["POST", "OPTIONS", "TRACE", "X" * 21])
def test_a_405_names_the_method_and_points_at_allow(client, method):
    body = assert_problem(client.request(method, "/v1/users/1"), 405)
    assert body["detail"] == (
        f"This path does not answer {method[:20]}; the Allow header lists the methods it does."
    )


def test_a_body_that_is_not_utf8_is_a_400_where_no_guard_parsed_it():
    # Only for media types the body guard does not parse: none in today's contract.

    error = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    answer = asyncio.run(undecodable(None, error))  # type: ignore[arg-type]
    assert answer.status_code == 400
    assert json.loads(answer.body)["detail"] == "The request is not valid UTF-8."


def test_every_error_handler_is_a_coroutine_function():
    # connexion runs any other handler in a thread pool, through an event loop that the
    # greenlet bridge (connexion_ext.bridge) does not run: such a handler answers 500.
    registered = []

    class Recorder:
        def add_error_handler(self, kind, handler):  # type: ignore[no-untyped-def]
            registered.append((kind, handler))

    use_problem_documents(Recorder(), load_spec())  # type: ignore[arg-type]
    assert len(registered) >= 9
    assert [kind for kind, handler in registered if not asyncio.iscoroutinefunction(handler)] == []


class TestEcho:
    """How a client's value is quoted back: JSON, UTF-8 as written, at most 100 characters."""

    def test_values_are_json_and_keep_their_characters(self):
        assert echo(None) == "null" and echo(True) == "true" and echo([{"a": 1}]) == '[{"a": 1}]'
        assert echo("张三") == '"张三"'

    def test_what_json_cannot_hold_is_quoted_as_text(self):
        assert echo(b"\x00") == "\"b'\\\\x00'\""

    def test_100_characters_are_kept_and_101_are_cut_to_100(self):
        fits, over = "x" * 98, "x" * 99  # 100 and 101 characters with their quotes
        assert echo(fits) == f'"{fits}"'
        assert echo(over) == f'"{"x" * 98}…' and len(echo(over)) == 100


class TestDescribe:
    """Each jsonschema keyword in words, for schemas today's contract may not use yet."""

    @staticmethod
    def said(schema, instance):  # type: ignore[no-untyped-def]
        entries, total = body_entries(Draft4Validator(schema).iter_errors(instance))
        assert total == len(entries) == 1, entries
        return entries[0]["pointer"], entries[0]["detail"]

    @pytest.mark.parametrize(
        ("schema", "instance", "detail"),
        [
            ({"type": ["string", "null"]}, 3, "the body must be a string or null, not 3"),
            ({"type": "object"}, [], "the body must be an object, not []"),
            ({"minimum": 0, "exclusiveMinimum": True}, 0, "the body must be greater than 0, not 0"),
            ({"minimum": 1}, 0, "the body must be at least 1, not 0"),
            ({"maximum": 9, "exclusiveMaximum": True}, 9, "the body must be less than 9, not 9"),
            ({"maximum": 9}, 10, "the body must be at most 9, not 10"),
            ({"minLength": 1}, "", "the body must not be empty"),
            ({"minLength": 3}, "ab", "the body must be at least 3 characters long; it has 2"),
            ({"maxLength": 1}, "ab", "the body must be at most 1 characters long; it has 2"),
            ({"pattern": "^a"}, "b", 'the body must match the pattern "^a", not "b"'),
            ({"pattern": "^a", "x-pattern-message": "must start with a"}, "b",
             "the body must start with a"),
            ({"enum": ["a", 1]}, "b", 'the body must be one of "a", 1; not "b"'),
            ({"multipleOf": 2}, 3, "the body does not satisfy multipleOf: 2 (it is 3)"),
        ],
    )  # fmt: skip
    def test_each_keyword(self, schema, instance, detail):  # type: ignore[no-untyped-def]
        assert self.said(schema, instance) == ("", detail)

    def test_a_valid_format_is_named(self):
        checker = Draft4Validator.FORMAT_CHECKER
        errors = Draft4Validator({"format": "email"}, format_checker=checker).iter_errors("x")
        entries, _ = body_entries(errors)
        assert entries == [{"pointer": "", "detail": 'the body must be a valid email, not "x"'}]

    def test_missing_fields_are_listed_in_the_order_the_schema_requires_them(self):
        errors = Draft4Validator({"required": ["a", "b", "c"]}).iter_errors({"b": 1})
        entries, _ = body_entries(errors)
        assert [entry["pointer"] for entry in entries] == ["/a", "/c"]
        errors = Draft4Validator({"required": ["a", "b", "c"]}).iter_errors({})
        assert [entry["pointer"] for entry in body_entries(errors)[0]] == ["/a", "/b", "/c"]

    def test_an_object_that_takes_no_fields_says_so(self):
        schema = {"type": "object", "additionalProperties": False}
        assert self.said(schema, {"a": 1}) == ("/a", "a is not a field here (it takes none)")

    def test_a_name_of_100_characters_is_kept_whole(self):
        name = "n" * 100
        assert self.said({"required": [name]}, {}) == (f"/{name[:98]}…", f"{name} is required")

    def test_an_item_of_a_list_is_named_by_its_place(self):
        schema = {"type": "object", "properties": {"tags": {"items": {"type": "string"}}}}
        assert self.said(schema, {"tags": ["a", 7]}) == (
            "/tags/1",
            "item 1 must be a string, not 7",
        )


def test_an_integer_path_segment_is_built_back_as_written():
    assert AnySegment().convert("12") == "12" and AnySegment().to_string(12) == "12"  # type: ignore[arg-type]


class TestProblemBoundary:
    """What our middleware raises outside connexion's handlers is a 500 document, logged;
    unless the answer had begun, or the scope is not HTTP: then it is raised on."""

    @staticmethod
    def run(app, scope_type="http"):  # type: ignore[no-untyped-def]

        sent = []

        async def send(message):  # type: ignore[no-untyped-def]
            sent.append(message)

        scope = {"type": scope_type, "method": "GET", "path": "/", "headers": []}
        asyncio.run(ProblemBoundary(app)(scope, None, send))
        return sent

    def test_a_failure_before_the_answer_is_a_logged_500(self, capsys):
        async def failing(scope, receive, send):  # type: ignore[no-untyped-def]
            raise RuntimeError("ours")

        configure_logging(level="INFO", log_format="json")  # as the app sets it up
        capsys.readouterr()
        start, body = self.run(failing)
        assert start["status"] == 500
        assert json.loads(body["body"])["detail"] == SERVER_FAILED
        logged = log_lines(capsys)
        [line] = [line for line in logged if line["level"] == "error"]
        assert line["event"] == "unhandled exception outside the handlers"
        assert line["exception"][0]["exc_type"] == "RuntimeError"

    def test_a_failure_after_the_answer_began_is_raised_on(self):
        async def half(scope, receive, send):  # type: ignore[no-untyped-def]
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            raise RuntimeError("mid-answer")

        with pytest.raises(RuntimeError, match="mid-answer"):
            self.run(half)

    def test_a_failure_outside_http_is_raised_on(self):
        async def failing(scope, receive, send):  # type: ignore[no-untyped-def]
            raise RuntimeError("lifespan")

        with pytest.raises(RuntimeError, match="lifespan"):
            self.run(failing, scope_type="lifespan")

    def test_an_answer_passes_through_untouched(self):
        async def fine(scope, receive, send):  # type: ignore[no-untyped-def]
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        assert [m.get("status") for m in self.run(fine)] == [204, None]
