"""connexion_ext: each customisation does what it claims, and each internal it relies on
is still there (one test per row of connexion_ext/internals.py's table)."""

import asyncio
import io
import json
from collections import Counter

import pytest
from connexion.exceptions import ProblemException

import connexion_ext
from connexion_ext import internals
from contract import METHODS
from tests.helpers import WRITE_KEY, call_wsgi, log_lines, wsgi_environ


def test_the_checked_versions_are_installed() -> None:
    internals.check_versions()


def test_another_version_refuses_to_start_with_one_clear_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(internals, "version", lambda package: "99.0")
    with pytest.raises(internals.UncheckedVersion) as refused:
        internals.check_versions()
    assert str(refused.value) == (
        "connexion 99.0 is installed, but connexion_ext relies on internals checked against"
        " connexion 3.3.0: run tests/test_connexion_ext.py, then update"
        " connexion_ext/internals.py (see its table)"
    )


def test_flask_runs_inline_and_public_wsgi_middleware_still_wraps_it(settings) -> None:  # type: ignore[no-untyped-def]
    # customise() replaces FlaskApp._middleware_app.asgi_app; connexion's documented
    # add_wsgi_middleware wraps whatever sits in its `.app`.
    from app import create_app

    app = create_app(settings)
    assert isinstance(app._middleware_app.asgi_app, connexion_ext.bridge.InlineFlask)

    def tagging(wsgi_app):  # type: ignore[no-untyped-def]
        def tagged(environ, start_response):  # type: ignore[no-untyped-def]
            def start(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
                return start_response(status, [*headers, ("X-Wrapped", "yes")], exc_info)

            return wsgi_app(environ, start)

        return tagged

    app.add_wsgi_middleware(tagging)
    with app.test_client(headers={"X-API-Key": WRITE_KEY}) as client:
        assert client.get("/v1/users").headers["x-wrapped"] == "yes"
    app.app.extensions["user_store"].engine.dispose()


def test_the_bridge_answers_wsgi_with_the_stack_status_and_body(app, to_wsgi) -> None:  # type: ignore[no-untyped-def]
    # a2wsgi's build_scope, build_environ and StatusStringMapping, in one greenlet.
    body = json.dumps({"name": "Ada", "age": 36}).encode()
    environ = wsgi_environ(
        "/v1/users",
        body,
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(len(body)),
    )
    status, _headers, answer = call_wsgi(to_wsgi(app), environ)
    assert status == "201 Created"
    assert json.loads(answer)["name"] == "Ada"


def test_flask_gets_gunicorns_environ_with_the_body_read_whole(app, to_wsgi) -> None:  # type: ignore[no-untyped-def]
    # A chunked body (no CONTENT_LENGTH) is read whole on the way; Flask then gets
    # gunicorn's environ as it was, its framing changed to the length it turned out.
    seen = {}

    @app.app.before_request
    def look() -> None:
        from flask import request

        seen.update(request.environ)

    body = b'{"name": "Ada", "age": 36}'
    environ = wsgi_environ(
        "/v1/users",
        body,
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"gunicorn.socket": "the connection"},
    )
    status, _headers, answer = call_wsgi(to_wsgi(app), environ)
    assert status == "201 Created", answer
    assert json.loads(answer)["name"] == "Ada"
    assert seen["gunicorn.socket"] == "the connection"
    assert seen["CONTENT_LENGTH"] == str(len(body)) and "HTTP_TRANSFER_ENCODING" not in seen
    assert seen["asgi.scope"]["wsgi_environ"] is environ


def test_operation_id_names_the_routed_operation(client, capsys) -> None:  # type: ignore[no-untyped-def]
    # ROUTING_CONTEXT, read by the access line and the body guard.
    capsys.readouterr()
    client.get("/v1/users/7")
    client.get("/v1/nowhere")
    lines = log_lines(capsys)
    access = [line["operation_id"] for line in lines if line["event"] == "request"]
    assert access == ["get_user", "unmatched"]


def test_operation_id_is_the_contracts_not_connexions_resolved_one() -> None:
    routed = {"extensions": {internals.ROUTING_CONTEXT: {"operation_id": "handlers.a.b_c"}}}
    assert connexion_ext.operation_id(routed) == "b_c"
    assert connexion_ext.operation_id({"extensions": {}}) is None


def test_query_parameters_are_read_raw_from_the_request(client) -> None:  # type: ignore[no-untyped-def]
    # The raw, repeated and unconverted values, read from the scope's query string.
    repeated = client.get("/v1/users?limit=1&limit=2")
    assert repeated.status_code == 400
    assert "given 2 times" in repeated.json()["detail"]
    underscored = client.get("/v1/users?limit=1_0")
    assert underscored.status_code == 400
    assert '"1_0"' in underscored.json()["detail"]


def test_the_parameter_validator_collects_every_problem(client) -> None:  # type: ignore[no-untyped-def]
    # ParameterValidator: connexion's validation middleware makes one per request with
    # (parameters, uri_parser, strict_validation, security_query_params) and calls
    # validate(scope).
    errors = client.get("/v1/users?limit=0&after=-1&x=1").json()["errors"]
    assert [(e["parameter"], e["in"]) for e in errors] == [
        ("x", "query"),
        ("limit", "query"),
        ("after", "query"),
    ]


def test_the_body_validator_reads_the_body_and_knows_if_it_is_required(client) -> None:  # type: ignore[no-untyped-def]
    # JSONRequestBodyValidator.wrap_receive (awaited with receive and scope, returning
    # both), ._schema, ._required and ._nullable.
    from connexion.validators import JSONRequestBodyValidator

    validator = JSONRequestBodyValidator(
        schema={"type": "object"},
        required=True,
        nullable=False,
        encoding="utf-8",
        strict_validation=True,
    )
    assert (validator._schema, validator._required, validator._nullable) == (
        {"type": "object"},
        True,
        False,
    )
    missing = client.post("/v1/users", content=b"", headers={"Content-Type": "application/json"})
    assert missing.json()["errors"] == [
        {"pointer": "", "detail": "the request has no body; this operation needs one"}
    ]
    assert client.post("/v1/users", json={"name": "Ada", "age": 3}).status_code == 201


def test_integer_path_parameters_are_routed_as_any_segment(app, client) -> None:  # type: ignore[no-untyped-def]
    # PATH_PARAMETER_CONVERTERS names the starlette converter connexion routes integers
    # with, and RoutingMiddleware registers its own in __init__: ours must win.
    from starlette.convertors import CONVERTOR_TYPES

    from connexion_ext.routing import AnySegment

    assert internals.STARLETTE_PATH_CONVERTERS["integer"] == "int"
    assert client.get("/v1/users/1").status_code == 404  # the middleware stack is built
    assert isinstance(CONVERTOR_TYPES["int"], AnySegment)
    assert client.get("/v1/users/abc").json()["errors"][0]["parameter"] == "user_id"


def test_each_operation_validates_each_parameter_once(app, client) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3 appends a path's shared parameters to the operation's own list, in
    # place, each time one of its middlewares builds the operation: six copies of
    # user_id, each validated (deep copy, new validator) on every request.
    assert client.get("/v1/users/1").status_code == 404  # the middleware stack is built
    spec = app.middleware.apis[0].specification  # the contract as connexion holds it
    for path, item in spec["paths"].items():
        for method in set(METHODS) & item.keys():
            names = Counter((p["name"], p["in"]) for p in item[method].get("parameters", []))
            repeated = [name for name, count in names.items() if count > 1]
            assert not repeated, f"{method.upper()} {path} repeats {repeated}"


def test_path_parameters_still_apply_to_every_operation_of_their_path(client) -> None:  # type: ignore[no-untyped-def]
    for method in ("get", "put", "patch", "delete"):
        response = client.request(method, "/v1/users/0", json={"name": "x", "age": 1})
        assert response.status_code == 400, method
        assert response.json()["errors"] == [
            {"parameter": "user_id", "in": "path", "detail": "user_id must be at least 1, not 0"}
        ], method


def test_validators_are_built_once_per_schema_not_per_request(client) -> None:  # type: ignore[no-untyped-def]
    from connexion_ext import validators

    def exchange() -> None:
        created = client.post("/v1/users", json={"name": "Ada", "age": 36})
        assert client.get(created.headers["Location"]).status_code == 200

    exchange()
    built = {key: validator for key, (_schema, validator) in validators._validators.items()}
    for _ in range(3):
        exchange()
    # By identity: jsonschema's validators compare equal when built from equal schemas.
    assert validators._validators.keys() == built.keys()
    assert all(validators._validators[key][1] is built[key] for key in built)
    assert built, "the request went through the cached validators"


def test_the_validator_cache_is_by_schema_checks_formats_and_stays_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jsonschema import Draft4Validator

    from connexion_ext import validators

    monkeypatch.setattr(validators, "_validators", {})
    monkeypatch.setattr(validators, "_MAX_VALIDATORS", 2)
    first, second = {"format": "email"}, {"format": "email"}
    compiled = validators._compiled(first, Draft4Validator)
    assert validators._compiled(first, Draft4Validator) is compiled
    assert validators._compiled(second, Draft4Validator) is not compiled  # equal, not same
    assert not compiled.is_valid("not an address")  # formats are checked
    validators._compiled({}, Draft4Validator)  # a third: the cache starts again
    assert len(validators._validators) == 1


def test_a_parameter_plan_is_made_once_per_operation_and_the_cache_stays_bounded(
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    # connexion makes a parameter validator per request; the plan of where each
    # parameter is and how it is checked is worked out once per operation.
    from connexion_ext import validators

    monkeypatch.setattr(validators, "_plans", {})
    monkeypatch.setattr(validators, "_MAX_VALIDATORS", 2)
    made = []
    of = validators._Parameter.of
    monkeypatch.setattr(validators._Parameter, "of", lambda param: made.append(1) or of(param))
    first = [{"name": "limit", "in": "query", "schema": {"type": "integer"}}]
    second = [dict(first[0])]  # equal, not the same operation's
    plan = validators._plan(first)
    assert validators._plan(first) is plan and len(made) == 1
    assert validators._plan(second) is not plan and len(made) == 2
    validators._plan([])  # a third: the cache starts again
    assert len(validators._plans) == 1


def test_without_strict_validation_unknown_query_parameters_are_let_through() -> None:
    limit = [{"name": "limit", "in": "query", "schema": {"type": "integer"}}]
    assert _validated(limit, b"limit=2&x=1", strict=False) == []
    assert [e["parameter"] for e in _validated(limit, b"limit=2&x=1")] == ["x"]


def test_a_nullable_body_may_be_null_and_nothing_else_may() -> None:
    # No operation of today's contract takes a nullable body; the validator keeps
    # connexion's meaning of `nullable` for one that does.
    from connexion_ext.validators import ContractJSONBodyValidator

    async def receive():  # type: ignore[no-untyped-def]
        return {"type": "http.request", "body": b"null", "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"4")]}

    def validate(nullable: bool) -> None:
        validator = ContractJSONBodyValidator(
            schema={"type": "object"}, nullable=nullable, encoding="utf-8", strict_validation=True
        )
        asyncio.run(validator.wrap_receive(receive, scope=scope))

    validate(nullable=True)
    with pytest.raises(ProblemException) as refused:
        validate(nullable=False)
    assert refused.value.ext == {
        "errors": [{"pointer": "", "detail": "the body must be an object, not null"}]
    }


def test_no_connexion_decorator_is_built_per_request(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3 rebuilds the parameter and response decorators of the operation
    # (inspecting the handler's signature) on every request; the views here are worked
    # out when the app is built.
    from connexion.decorators.main import BaseDecorator

    from connexion_ext import operations

    built = []
    monkeypatch.setattr(BaseDecorator, "decorate", lambda *args: built.append(args))
    monkeypatch.setattr(operations.Arguments, "__init__", lambda *args: built.append(args))
    for _ in range(3):
        assert client.get("/v1/users?limit=1").status_code == 200
        assert client.post("/v1/users", json={"name": "Ada", "age": 36}).status_code == 201
    assert built == []


def test_operations_without_a_body_never_parse_one(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3 asks every request for its body and its form files, even a GET.
    from flask import Request

    read = []
    get_json = Request.get_json
    monkeypatch.setattr(
        Request, "get_json", lambda self, **kw: read.append(1) or get_json(self, **kw)
    )
    monkeypatch.setattr(Request, "files", property(lambda self: read.append(2)))
    monkeypatch.setattr(Request, "form", property(lambda self: read.append(3)))
    created = client.post("/v1/users", json={"name": "Ada", "age": 36})
    assert created.status_code == 201
    assert read == [1], "an operation with a body reads it, as JSON, once"
    read.clear()
    assert client.get(created.headers["Location"]).status_code == 200
    assert client.get("/v1/users?limit=1").status_code == 200
    assert read == []


def test_the_flask_side_builds_its_uri_parser_once(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3 builds a URI parser per request twice: in its validation middleware
    # (left alone) and in the Flask decorator (built once per view here).
    from connexion.uri_parsing import AbstractURIParser

    built = []
    original = AbstractURIParser.__init__

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(AbstractURIParser, "__init__", counting)
    assert client.get("/v1/users?limit=1").status_code == 200  # builds what is lazy
    built.clear()
    for _ in range(3):
        assert client.get("/v1/users?limit=1").status_code == 200
    assert len(built) == 3, "one parser per request, the validation middleware's"


def test_only_swagger_ui_paths_go_through_its_router(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3 copies every request's scope and runs it through Swagger UI's router
    # before the API sees it; only the UI and the spec are ever found there.
    from connexion.middleware import swagger_ui

    class CountingScope:
        def __init__(self, var):  # type: ignore[no-untyped-def]
            self.var, self.sets = var, 0

        def set(self, value):  # type: ignore[no-untyped-def]
            self.sets += 1
            return self.var.set(value)

        def get(self):  # type: ignore[no-untyped-def]
            return self.var.get()

    routed = CountingScope(swagger_ui._original_scope)
    monkeypatch.setattr(swagger_ui, "_original_scope", routed)
    assert client.get("/v1/users?limit=1").status_code == 200
    assert client.get("/v1/users/999").status_code == 404
    assert client.get("/v1/nowhere").status_code == 404
    assert routed.sets == 0
    assert client.get("/v1/openapi.json").json()["info"]["title"] == "users-api"
    assert "swagger-ui" in client.get("/v1/ui/").text
    redirect = client.get("/v1/ui", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (307, "/v1/ui/")
    assert routed.sets == 3


def test_swagger_ui_is_found_under_a_root_path(app) -> None:  # type: ignore[no-untyped-def]
    # Behind a proxy that mounts the service at /api (SCRIPT_NAME), routes match the path
    # below the root path, for the UI as for the API.
    with app.test_client(root_path="/api", headers={"X-API-Key": WRITE_KEY}) as mounted:
        assert "swagger-ui" in mounted.get("/api/v1/ui/").text
        assert mounted.get("/api/v1/openapi.json").json()["info"]["title"] == "users-api"
        assert mounted.get("/api/v1/users?limit=1").status_code == 200


class TestGreenletBridge:
    def test_a_read_answers_with_the_stacks_status_headers_and_body(self, app, to_wsgi) -> None:  # type: ignore[no-untyped-def]
        status, headers, body = call_wsgi(to_wsgi(app), wsgi_environ("/v1/users"))
        assert status == "200 OK"
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        assert json.loads(body) == {"items": [], "count": 0, "limit": 20, "next": None}

    @pytest.mark.parametrize(
        ("method", "path"),
        [("POST", "/v1/users"), ("PUT", "/v1/users/1"), ("PATCH", "/v1/users/1")],
    )
    def test_a_body_in_a_media_type_not_taken_is_a_415_without_an_event_loop(
        self, app, to_wsgi, method, path
    ) -> None:  # type: ignore[no-untyped-def]
        # An error handler that is not a coroutine function makes connexion hop to a
        # thread pool, which needs the event loop this bridge does not run.
        body = b'{"name": "Ada", "age": 30}'
        environ = wsgi_environ(
            path,
            body,
            REQUEST_METHOD=method,
            CONTENT_TYPE="text/plain",
            CONTENT_LENGTH=str(len(body)),
            HTTP_IF_MATCH='"1"',
        )
        status, headers, answer = call_wsgi(to_wsgi(app), environ)
        assert status == "415 Unsupported Media Type"
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(answer)["detail"].endswith(', not "text/plain".')

    def test_flask_reads_the_body_the_stack_validated_however_it_was_framed(
        self, app, to_wsgi
    ) -> None:  # type: ignore[no-untyped-def]
        # What connexion validates is what the handler gets: a chunked body (no
        # Content-Length) is read by both; bytes a request's framing does not announce
        # (no Content-Length, not chunked, and the server does not say its input ends
        # with the body: PEP 3333's wsgi.input_terminated) by neither.
        body = b'{"name": "Ada", "age": 30}'
        environ = wsgi_environ("/v1/users", body, REQUEST_METHOD="POST")
        environ["CONTENT_TYPE"] = "application/json"
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        status, _, answer = call_wsgi(to_wsgi(app), environ)
        assert status == "201 Created" and json.loads(answer)["name"] == "Ada"
        environ = wsgi_environ("/v1/users", body, REQUEST_METHOD="POST")
        environ["CONTENT_TYPE"] = "application/json"
        status, _, answer = call_wsgi(to_wsgi(app), environ)
        assert status == "400 Bad Request"
        assert "has no body" in json.loads(answer)["errors"][0]["detail"]
        environ = wsgi_environ("/v1/users", body, REQUEST_METHOD="POST")
        environ["CONTENT_TYPE"] = "application/json"
        environ["wsgi.input_terminated"] = True  # gunicorn's, for one
        status, _, answer = call_wsgi(to_wsgi(app), environ)
        assert status == "201 Created" and json.loads(answer)["age"] == 30

    @pytest.mark.parametrize("key", [WRITE_KEY, ""], ids=["answered", "refused"])
    def test_a_head_answer_carries_no_body(self, app, to_wsgi, key) -> None:  # type: ignore[no-untyped-def]
        # connexion's own 401 has one; gunicorn dropped it and warned on every HEAD.
        environ = wsgi_environ("/v1/users", REQUEST_METHOD="HEAD", HTTP_X_API_KEY=key)
        status, headers, body = call_wsgi(to_wsgi(app), environ)
        assert status == ("200 OK" if key else "401 Unauthorized")
        assert body == b"" and int(headers["content-length"]) > 0

    def test_a_path_that_is_not_utf8_is_an_ordinary_404(self, app, to_wsgi) -> None:  # type: ignore[no-untyped-def]
        # WSGI hands the percent-decoded path over as latin-1: /%ff is "\xff" there.
        environ = wsgi_environ("/v1/nothing\xff", SCRIPT_NAME="/\xfe")
        status, headers, body = call_wsgi(to_wsgi(app), environ)
        assert status == "404 Not Found"
        assert headers["content-type"] == "application/problem+json"
        problem = json.loads(body)
        assert problem["detail"].startswith("There is nothing at this path")
        assert problem["request_id"] == headers["x-request-id"]

    def test_a_bad_byte_becomes_one_replacement_character_in_the_logged_path(
        self, app, capsys, to_wsgi
    ) -> None:  # type: ignore[no-untyped-def]
        # PEP 3333 lets a server leave out an empty SCRIPT_NAME.
        environ = wsgi_environ("/v1/nothing\xff")
        del environ["SCRIPT_NAME"]
        capsys.readouterr()
        status, headers, _ = call_wsgi(to_wsgi(app), environ)
        assert status == "404 Not Found"
        lines = log_lines(capsys)
        [access] = [line for line in lines if line.get("request_id") == headers["x-request-id"]]
        assert access["path"] == "/v1/nothing\ufffd"

    def test_only_swagger_ui_paths_run_on_an_event_loop(self, app, to_wsgi) -> None:  # type: ignore[no-untyped-def]
        wsgi = to_wsgi(app)
        through_loop = []
        with_loop = wsgi.with_loop

        def recording(environ, start_response):  # type: ignore[no-untyped-def]
            through_loop.append(environ["PATH_INFO"])
            return with_loop(environ, start_response)

        wsgi.with_loop = recording
        assert call_wsgi(wsgi, wsgi_environ("/v1/users"))[0] == "200 OK"
        assert through_loop == []
        status, headers, _ = call_wsgi(wsgi, wsgi_environ("/v1/ui/swagger-ui.css"))
        assert status == "200 OK" and headers["content-type"].startswith("text/css")
        assert through_loop == ["/v1/ui/swagger-ui.css"]

    def test_a_path_that_needs_an_event_loop_and_is_not_listed_fails_loudly(self, to_wsgi) -> None:  # type: ignore[no-untyped-def]
        async def waits(scope, receive, send):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0)  # hands control to an event loop; there is none

        wsgi = to_wsgi(waits)
        with pytest.raises(RuntimeError, match=r"^/slow awaited an event loop; add it to loop_"):
            call_wsgi(wsgi, wsgi_environ("/slow"))

    def test_an_app_that_never_answers_is_a_500(self, to_wsgi) -> None:  # type: ignore[no-untyped-def]
        async def silent(scope, receive, send):  # type: ignore[no-untyped-def]
            pass

        wsgi = to_wsgi(silent)
        assert call_wsgi(wsgi, wsgi_environ("/")) == ("500 Internal Server Error", {}, b"")


class TestExchange:
    """One request's receive/send channel over WSGI, driven message by message."""

    def test_receive_reads_the_body_in_chunks_then_reports_a_disconnect(self) -> None:
        exchange = connexion_ext.bridge._Exchange(
            io.BytesIO(b"x" * (connexion_ext.bridge.CHUNK + 3))
        )
        received = [asyncio.run(exchange.receive()) for _ in range(4)]
        assert received == [
            {"type": "http.request", "body": b"x" * connexion_ext.bridge.CHUNK, "more_body": True},
            {"type": "http.request", "body": b"xxx", "more_body": True},
            {"type": "http.request", "body": b"", "more_body": False},
            {"type": "http.disconnect"},
        ]

    def test_send_keeps_the_status_the_decoded_headers_and_each_non_empty_chunk(self) -> None:
        exchange = connexion_ext.bridge._Exchange(io.BytesIO())
        assert (exchange.status, exchange.headers, exchange.body) == (500, [], [])
        messages = [
            {"type": "http.response.start", "status": 201, "headers": [(b"x-name", b"Jos\xe9")]},
            {"type": "http.response.body", "body": b"ab", "more_body": True},
            {"type": "http.response.body", "body": b"", "more_body": True},
            {"type": "http.response.body", "more_body": True},
            {"type": "http.response.body", "body": b"cd"},
        ]
        for message in messages:
            asyncio.run(exchange.send(message))
        assert exchange.status_line() == "201 Created"
        assert exchange.headers == [("x-name", "José")]
        assert exchange.body == [b"ab", b"cd"]

    def test_a_start_without_headers_has_none(self) -> None:
        exchange = connexion_ext.bridge._Exchange(io.BytesIO())
        asyncio.run(exchange.send({"type": "http.response.start", "status": 204}))
        assert (exchange.status_line(), exchange.headers) == ("204 No Content", [])


class TestInlineFlask:
    def test_calls_the_wsgi_app_with_the_body_and_sends_lowercase_headers(self) -> None:
        closed = []

        class Answer(list):  # type: ignore[type-arg]
            def close(self) -> None:
                closed.append(True)

        def wsgi(environ, start_response):  # type: ignore[no-untyped-def]
            start_response("201 Created", [("X-Echo-Name", "Jos\xe9")])
            return Answer([b"got ", environ["wsgi.input"].read()])

        messages = [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"cd", "more_body": False},
        ]
        sent: list[dict] = []  # type: ignore[type-arg]

        async def receive():  # type: ignore[no-untyped-def]
            return messages.pop(0)

        async def send(message):  # type: ignore[no-untyped-def]
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "http_version": "1.1",
            "scheme": "http",
            "server": ("test", 80),
        }
        asyncio.run(connexion_ext.bridge.InlineFlask(wsgi)(scope, receive, send))
        assert sent == [
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"x-echo-name", b"Jos\xe9")],
            },
            {"type": "http.response.body", "body": b"got abcd"},
        ]
        assert closed == [True]

    def test_acknowledges_both_lifespan_phases(self) -> None:
        sent = self.lifespan([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        assert sent == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]

    def test_stops_at_a_lifespan_message_out_of_turn(self) -> None:
        assert self.lifespan([{"type": "lifespan.shutdown"}]) == []
        sent = self.lifespan([{"type": "lifespan.startup"}, {"type": "lifespan.startup"}])
        assert sent == [{"type": "lifespan.startup.complete"}]

    @staticmethod
    def lifespan(messages):  # type: ignore[no-untyped-def]
        sent = []

        async def receive():  # type: ignore[no-untyped-def]
            return messages.pop(0)

        async def send(message):  # type: ignore[no-untyped-def]
            sent.append(message)

        def never_called(environ, start_response):  # type: ignore[no-untyped-def]
            raise AssertionError("lifespan reached Flask")

        asyncio.run(
            connexion_ext.bridge.InlineFlask(never_called)({"type": "lifespan"}, receive, send)
        )
        return sent


def _operation(spec_operation, handler, method="get"):  # type: ignore[no-untyped-def]
    """A connexion operation of a path with an integer id, handled by `handler`."""
    from connexion.operations import OpenAPIOperation
    from connexion.resolver import Resolver

    return OpenAPIOperation(
        method, "/things/{thing_id}", {"operationId": "thing", **spec_operation},
        Resolver(lambda _operation_id: handler),
    )  # fmt: skip


ID = {"name": "thing_id", "in": "path", "required": True, "schema": {"type": "integer"}}


def test_a_view_converts_query_parameters_by_type_and_fills_in_defaults() -> None:
    import flask

    from connexion_ext.internals import sanitized
    from connexion_ext.operations import Arguments

    def thing(thing_id, limit, flag=None, name=None):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    query = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 20}},
        {"name": "flag", "in": "query", "schema": {"type": "boolean"}},
        {"name": "name", "in": "query", "schema": {"type": "string"}},
        {"name": "unused", "in": "query", "schema": {"type": "integer", "default": 1}},
    ]
    arguments = Arguments(_operation({"parameters": [ID, *query]}, thing), thing, sanitized)
    with flask.Flask(__name__).test_request_context("/things/7?flag=true&name=x&unused=3"):
        assert arguments({"thing_id": 7}) == {"thing_id": 7, "limit": 20, "flag": True, "name": "x"}
    with flask.Flask(__name__).test_request_context("/things/7?limit=5"):
        assert arguments({"thing_id": 7}) == {"thing_id": 7, "limit": 5}


def test_a_view_passes_the_json_body_or_the_schema_default() -> None:
    import flask

    from connexion_ext.internals import sanitized
    from connexion_ext.operations import Arguments

    def thing(thing_id, payload):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    body = {
        "x-body-name": "payload",
        "content": {"application/json": {"schema": {"type": "object", "default": {"a": [1]}}}},
    }
    operation = _operation({"parameters": [ID], "requestBody": body}, thing, method="post")
    arguments = Arguments(operation, thing, sanitized)
    with flask.Flask(__name__).test_request_context("/things/7", method="POST", json={"b": 2}):
        assert arguments({"thing_id": 7}) == {"thing_id": 7, "payload": {"b": 2}}
    with flask.Flask(__name__).test_request_context("/things/7", method="POST"):
        first = arguments({"thing_id": 7})["payload"]
        assert first == {"a": [1]}
        first["a"].append(2)  # each request gets a copy of the default, never the spec's
        assert arguments({"thing_id": 7})["payload"] == {"a": [1]}


def test_a_view_hands_connexion_context_values_to_a_handler_that_takes_them() -> None:
    import flask
    from connexion.context import _context

    from connexion_ext.internals import sanitized
    from connexion_ext.operations import Arguments

    def asks(thing_id, token_info, context_):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    def does_not(thing_id):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    def takes_any(thing_id, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    token = _context.set({"user": "ada", "token_info": {"sub": "ada"}})
    try:
        with flask.Flask(__name__).test_request_context("/things/7"):
            kwargs = Arguments(_operation({"parameters": [ID]}, asks), asks, sanitized)(
                {"thing_id": 7}
            )
            assert kwargs["token_info"] == {"sub": "ada"} and "user" not in kwargs
            assert kwargs["context_"]["user"] == "ada"
            plain = Arguments(_operation({"parameters": [ID]}, does_not), does_not, sanitized)
            assert plain({"thing_id": 7}) == {"thing_id": 7}
            every = Arguments(_operation({"parameters": [ID]}, takes_any), takes_any, sanitized)
            assert every({"thing_id": 7}) == {"thing_id": 7, **_context.get()}
    finally:
        _context.reset(token)


def test_an_api_is_registered_under_the_name_it_is_added_with_or_its_own() -> None:
    # connexion's add_api(..., name=...): several APIs in one app need a name each.
    import flask
    from connexion.spec import Specification

    from connexion_ext.operations import add_prepared_api
    from tests.helpers import ROOT

    spec = Specification.load(ROOT / "openapi.yaml")
    unnamed, named = flask.Flask(__name__), flask.Flask(__name__)
    api = add_prepared_api(unnamed, spec)
    add_prepared_api(named, spec, name="second")
    assert (list(unnamed.blueprints), list(named.blueprints)) == ([api.blueprint.name], ["second"])


RESPONSES = {
    "200": {
        "description": "a thing",
        "content": {"application/json": {"schema": {}}, "text/plain": {"schema": {}}},
    },
    "default": {"description": "a problem", "content": {"application/problem+json": {}}},
}


@pytest.mark.parametrize(
    ("answer", "made_here"),
    [
        (({"id": 7}, 200, {"Content-Type": "application/json", "ETag": '"1"'}), True),
        (({"status": 409}, 409, {"Content-Type": "application/problem+json"}), True),
        ((None, 200, {"Content-Type": "application/json"}), False),  # no body: connexion's
        (("seven", 200, {"Content-Type": "text/plain"}), False),
        (({"id": 7}, 200, {}), False),  # no media type named
        (({"id": 7}, 200, [("Content-Type", "application/json")]), False),
        (({"id": 7}, 200), False),
        ({"id": 7}, False),
    ],
)
def test_a_json_answer_is_made_here_and_any_other_by_connexion(answer, made_here) -> None:  # type: ignore[no-untyped-def]
    """A handler's (data, status, headers) in one of the operation's JSON media types is
    serialised here, as connexion would, without its decorator (a tenth of a request)."""
    import flask

    from connexion_ext.jsonifier import OrjsonJsonifier
    from connexion_ext.operations import Answer

    def thing(thing_id):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    jsonifier = OrjsonJsonifier()
    answers = Answer(_operation({"parameters": [ID], "responses": RESPONSES}, thing), jsonifier)
    passed_on = []
    answers.by_connexion = lambda answer: passed_on.append(answer) or "connexion's"
    with flask.Flask(__name__).app_context():
        made = answers(answer)
    if not made_here:
        assert (made, passed_on) == ("connexion's", [answer])
        return
    data, status, headers = answer
    assert passed_on == []
    assert (made.status_code, made.get_data()) == (status, jsonifier.dumps(data))
    assert dict(made.headers) == {**headers, "Content-Length": str(len(made.get_data()))}


QUERY_KINDS = "plain integer, number, boolean or string"


@pytest.mark.parametrize(
    ("parameter", "refusal"),
    [
        (
            {"name": "tags", "in": "query", "schema": {"type": "array", "items": {}}},
            f"thing: query parameter 'tags' is not a {QUERY_KINDS}",
        ),
        (
            {"name": "maybe", "in": "query", "schema": {"type": "integer", "nullable": True}},
            f"thing: query parameter 'maybe' is not a {QUERY_KINDS}",
        ),
        (
            {"name": "on", "in": "path", "required": True, "schema": {"type": "boolean"}},
            "thing: path parameter 'on' is not a plain integer, number or string",
        ),
    ],
)
def test_a_parameter_the_views_cannot_bind_stops_the_start(parameter, refusal) -> None:  # type: ignore[no-untyped-def]
    from connexion_ext.internals import sanitized
    from connexion_ext.operations import Arguments, UnsupportedOperation

    def thing(thing_id, tags=None, maybe=None, on=None):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    with pytest.raises(UnsupportedOperation) as refused:
        Arguments(_operation({"parameters": [ID, parameter]}, thing), thing, sanitized)
    assert str(refused.value) == refusal


def test_number_and_string_parameters_are_bound_in_the_path_and_the_query() -> None:
    import flask

    from connexion_ext.internals import sanitized
    from connexion_ext.operations import Arguments

    def thing(ratio, slug_name, scale=None):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    ratio = {"name": "ratio", "in": "path", "required": True, "schema": {"type": "number"}}
    # Flask's path variables cannot hold "-": connexion routes slug-name as slug_name.
    slug = {"name": "slug-name", "in": "path", "required": True, "schema": {"type": "string"}}
    scale = {"name": "scale", "in": "query", "schema": {"type": "number"}}
    operation = _operation({"parameters": [ratio, slug, scale]}, thing)
    arguments = Arguments(operation, thing, sanitized)
    with flask.Flask(__name__).test_request_context("/things/0.5?scale=1.5"):
        got = arguments({"ratio": 0.5, "slug_name": "ada"})
        assert got == {"ratio": 0.5, "slug_name": "ada", "scale": 1.5}


def test_an_api_with_pythonic_params_gives_handlers_python_names() -> None:
    import flask

    from connexion_ext.jsonifier import OrjsonJsonifier
    from connexion_ext.operations import PreparedOperation

    def thing(thing_id, page_size):  # type: ignore[no-untyped-def]
        return {"page_size": page_size}, 200, {"Content-Type": "application/json"}

    page_size = {"name": "pageSize", "in": "query", "schema": {"type": "integer"}}
    spec = {"parameters": [ID, page_size], "responses": RESPONSES}
    prepared = PreparedOperation.from_operation(
        _operation(spec, thing), pythonic_params=True, jsonifier=OrjsonJsonifier()
    )
    with flask.Flask(__name__).test_request_context("/things/7?pageSize=3"):
        assert prepared.fn(thing_id=7).get_json() == {"page_size": 3}


def _validated(parameters, query=b"", path_params=None, headers=(), strict=True):  # type: ignore[no-untyped-def]
    """The 400's errors ContractParameterValidator raises for this request, or []."""
    from connexion.exceptions import ProblemException

    from connexion_ext.validators import ContractParameterValidator

    scope = {"type": "http", "query_string": query, "headers": list(headers)}
    if path_params is not None:  # a scope no route matched has none
        scope["path_params"] = path_params
    validator = ContractParameterValidator(parameters, uri_parser=None, strict_validation=strict)
    try:
        validator.validate(scope)
    except ProblemException as problem:
        return problem.ext["errors"]
    return []


def test_the_contract_loaded_for_connexion_is_a_copy_and_the_spec_stays_as_written() -> None:
    import copy

    from connexion_ext import load_contract
    from contract import load_spec

    spec = load_spec()
    written = copy.deepcopy(spec)
    loaded = load_contract(spec)
    assert spec == written
    assert "parameters" in written["paths"]["/v1/users/{user_id}"]
    assert "parameters" not in loaded["paths"]["/v1/users/{user_id}"]


def test_a_required_path_parameter_no_route_filled_in_is_missing() -> None:
    user_id = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    [error] = _validated([user_id])
    assert (error["parameter"], error["in"]) == ("user_id", "path")


def test_swagger_ui_prefixes_run_through_mounts_and_hosts() -> None:
    from starlette.routing import Host, Mount, Route, Router

    from connexion_ext.swagger_ui import _path_prefixes

    def page(request):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    routes = [
        Mount("/v1", routes=[Route("/ui/", page), Route("/spec/{name}/{part}", page)]),
        Host("docs.example", Router([Route("/guide", page), Route("/BOX/", page)])),
    ]
    assert list(_path_prefixes(routes)) == ["/v1/ui", "/v1/spec", "/guide", "/BOX"]


def test_an_integer_within_plain_bounds_needs_no_schema_validator(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from connexion_ext import validators

    asked = []
    compiled = validators._compiled
    monkeypatch.setattr(validators, "_compiled", lambda *a: asked.append(a) or compiled(*a))
    plain = [
        {"name": "n", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 9}}
    ]
    assert _validated(plain, b"n=1") == _validated(plain, b"n=9") == []
    assert asked == []
    assert _validated(plain, b"n=10") == [
        {"parameter": "n", "in": "query", "detail": "n must be at most 9, not 10"}
    ]
    assert asked, "out of bounds, jsonschema words the problem"
    asked.clear()
    stepped = [{"name": "n", "in": "query", "schema": {"type": "integer", "multipleOf": 2}}]
    assert _validated(stepped, b"n=3")[0]["detail"] == "n does not satisfy multipleOf: 2 (it is 3)"
    assert asked, "any other keyword: jsonschema decides"


def test_plain_integer_bounds_are_any_plain_schema_and_unbounded_sides_are_open(
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    from connexion_ext import validators

    asked = []
    compiled = validators._compiled
    monkeypatch.setattr(validators, "_compiled", lambda *a: asked.append(a) or compiled(*a))
    every_plain_key = {
        "type": "integer",
        "format": "int64",
        "minimum": 1,
        "maximum": 9,
        "description": "d",
        "example": 2,
        "default": 2,
        "title": "t",
    }
    for schema in (every_plain_key, {**every_plain_key, "format": "int32"}, {"type": "integer"}):
        assert _validated([{"name": "n", "in": "query", "schema": schema}], b"n=2") == []
    below = [{"name": "n", "in": "query", "schema": {"type": "integer", "maximum": 9}}]
    assert _validated(below, b"n=-5") == []
    assert asked == []
    odd = [{"name": "n", "in": "query", "schema": {"type": "integer", "format": "port"}}]
    assert _validated(odd, b"n=2") == []
    assert asked, "a format it does not know: jsonschema decides"


TEXT = {"type": "string"}


def test_other_types_are_checked_as_connexion_converts_them() -> None:
    # No parameter of today's contract is a boolean or a number; such a one is checked
    # in the form connexion's own URI parser converts it to.
    from connexion.uri_parsing import OpenAPIURIParser

    from connexion_ext.validators import ContractParameterValidator

    parameters = [
        {"name": "b", "in": "query", "schema": {"type": "boolean"}},
        {"name": "x", "in": "query", "schema": {"type": "number", "maximum": 1.5}},
        {"name": "t", "in": "query", "schema": {"type": "array", "items": TEXT, "maxItems": 2}},
    ]

    def validated(query: bytes) -> list:  # type: ignore[type-arg]
        parser = OpenAPIURIParser(parameters, {})
        validator = ContractParameterValidator(
            parameters, uri_parser=parser, strict_validation=True
        )
        scope = {"type": "http", "query_string": query, "path_params": {}, "headers": []}
        try:
            validator.validate(scope)
        except ProblemException as problem:
            return problem.ext["errors"]  # type: ignore[no-any-return]
        return []

    assert validated(b"b=true&x=1.25") == []
    assert [e["detail"] for e in validated(b"x=2.5")] == ["x must be at most 1.5, not 2.5"]
    assert validated(b"t=a&t=b") == []  # an array may repeat; any other parameter may not
    assert [e["parameter"] for e in validated(b"t=a&t=b&t=c&b=true&b=false")] == ["b", "t"]


def test_parameters_are_read_from_the_scope_in_each_place() -> None:
    parameters = [
        {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "user-id", "in": "path", "required": True, "schema": {"type": "integer"}},
        {"name": "X-Tag", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "c", "in": "cookie", "required": True, "schema": {"type": "string"}},
    ]
    given = {"path_params": {"user_id": "7"}, "headers": [(b"x-tag", b"a"), (b"cookie", b"c=1")]}
    assert _validated(parameters, b"q=x", **given) == []
    missing = _validated(parameters, b"", path_params={})
    assert [(e["parameter"], e["in"]) for e in missing] == [
        ("q", "query"), ("user-id", "path"), ("X-Tag", "header"), ("c", "cookie"),
    ]  # fmt: skip


def test_a_header_of_another_type_than_string_is_checked_as_its_text() -> None:
    # connexion converts query and path values by type, not header or cookie ones: it
    # checks those as their text, and so does this validator.
    flag = [{"name": "X-Flag", "in": "header", "schema": {"type": "boolean"}}]
    [problem] = _validated(flag, b"", headers=[(b"x-flag", b"true")])
    assert (problem["parameter"], problem["in"]) == ("X-Flag", "header")


def test_the_response_validator_reads_the_request_method_from_its_scope() -> None:
    # JSONResponseBodyValidator keeps the request's scope as `_scope`: a HEAD's answer is
    # sent unchecked (no body), any other is checked against the schema.
    from connexion_ext.validators import JSONResponseValidator

    async def send(message):  # type: ignore[no-untyped-def]
        pass

    def validator(method: str) -> JSONResponseValidator:
        scope = {"type": "http", "method": method, "headers": []}
        return JSONResponseValidator(scope, schema={"type": "object"}, encoding="utf-8")

    assert validator("HEAD").wrap_send(send) is send
    assert validator("GET").wrap_send(send) is not send


def _binds_counted(monkeypatch):  # type: ignore[no-untyped-def]
    """Each time Flask binds its URL map to a request (to match it), appended to."""
    from werkzeug.routing import Map

    bound = []
    bind_to_environ = Map.bind_to_environ
    monkeypatch.setattr(
        Map, "bind_to_environ", lambda *a, **kw: bound.append(a) or bind_to_environ(*a, **kw)
    )
    return bound


def test_flask_dispatches_what_connexion_routed_without_matching_it_again(
    client, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # connexion's router finds the operation and its path parameters before Flask sees a
    # request; Flask's URL map found them a second time (6% of a GET).
    bound = _binds_counted(monkeypatch)
    created = client.post("/v1/users", json={"name": "Ada", "age": 36})
    assert created.status_code == 201
    user = created.headers["Location"]
    assert client.get(user).json()["name"] == "Ada"
    assert client.get("/v1/users?limit=1").status_code == 200
    etag = client.get(user).headers["ETag"]
    changed = client.put(user, json={"name": "Ada", "age": 37}, headers={"If-Match": etag})
    assert changed.json()["age"] == 37
    assert client.head(user).status_code == 200
    assert client.get("/v1").status_code == 200
    assert bound == []


def test_the_gunicorn_path_dispatches_without_a_match_too(app, to_wsgi, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    wsgi = to_wsgi(app)
    environ = wsgi_environ("/v1/users/1", HTTP_X_API_KEY=WRITE_KEY)
    call_wsgi(wsgi, environ)  # connexion adds the API to Flask on the first request
    bound = _binds_counted(monkeypatch)
    status, _headers, _body = call_wsgi(wsgi, wsgi_environ("/v1/users/1", HTTP_X_API_KEY=WRITE_KEY))
    assert status.startswith("404")  # no such user: the handler ran and said so
    assert bound == []


@pytest.mark.parametrize("path", ["/v1//users", "/v1//users/1", "/v1/users/1/"])
def test_a_path_connexion_routes_loosely_is_still_routed_by_flask(client, path) -> None:  # type: ignore[no-untyped-def]
    # connexion's router takes /v1//users for /v1/users; only a path written exactly as
    # the rule takes it is dispatched without Flask's URL map, which refuses the others.
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"


def test_an_app_that_checks_its_host_is_routed_by_flask(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Flask checks TRUSTED_HOSTS while it builds the URL adapter; such an app keeps it.
    app.app.config["TRUSTED_HOSTS"] = ["api.example.org"]
    bound = _binds_counted(monkeypatch)
    with app.test_client(headers={"X-API-Key": WRITE_KEY}) as client:
        assert client.get("/v1", headers={"Host": "api.example.org"}).status_code == 200
        refused = client.get("/v1", headers={"Host": "elsewhere.example"})
    assert refused.status_code == 400
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert len(bound) == 1, "Flask matched the trusted one (the other stops at the host)"


@pytest.mark.parametrize(
    "scope",
    [None, {"type": "http", "path": "/v1"}, {"type": "http", "path": "/v1", "extensions": {}}],
    ids=["no scope", "no extensions", "not routed"],
)
def test_a_request_connexion_did_not_route_is_routed_by_flask(app, client, scope) -> None:  # type: ignore[no-untyped-def]
    from werkzeug.test import EnvironBuilder

    assert client.get("/v1").status_code == 200  # connexion adds the API to Flask
    environ = EnvironBuilder(path="/v1").get_environ()
    if scope is not None:
        environ["asgi.scope"] = scope
    request = app.app.request_class(environ)
    adapter = app.app.create_url_adapter(request)
    assert adapter is not None
    endpoint, arguments = adapter.match()
    assert (endpoint.endswith("_api_index"), arguments) == (True, {})


def _routed_rule(app, template, flask_rule, types):  # type: ignore[no-untyped-def]
    from werkzeug.routing import Rule

    from connexion_ext.dispatch import RoutedRule

    rule = Rule(flask_rule, endpoint="x")
    rule.bind(app.app.url_map, rebind=True)
    return RoutedRule.of(rule, template, types, app.app.url_map)


def test_a_routed_rule_reads_a_path_as_flasks_rule_would(app) -> None:  # type: ignore[no-untyped-def]
    route = _routed_rule(
        app,
        "/v1/shops/{shop-id}/items/{price}/{code}",
        "/v1/shops/<int:shop_id>/items/<float:price>/<code>",
        {"shop-id": "integer", "price": "number", "code": "string"},
    )
    assert route.arguments("/v1/shops/7/items/2.5/a.b") == {
        "shop_id": 7,
        "price": 2.5,
        "code": "a.b",
    }
    assert route.arguments("/v1/shops/+7/items/.5/ab") == {"shop_id": 7, "price": 0.5, "code": "ab"}
    for loose in (
        "/v1/shops//7/items/2.5/ab",
        "/v1/shops/7/items/2.5/ab/",
        "/v1/shops/7/items/2.5",
    ):
        assert route.arguments(loose) is None, loose
    # What Flask's converters refuse (int() and float() would take it) is Flask's to answer.
    for refused in (
        "/v1/shops/1_0/items/2/ab",
        "/v1/shops/x/items/2/ab",
        "/v1/shops/7/items/1e5/ab",
    ):
        assert route.arguments(refused) is None, refused
    assert _routed_rule(app, "/v1.0", "/v1.0", {}).arguments("/v1x0") is None
    files = _routed_rule(app, "/files/{name}", "/files/<path:name>", {"name": "path"})
    assert files.arguments("/files/a/b.txt") == {"name": "a/b.txt"}


def test_two_operations_routing_names_alike_are_left_to_flask() -> None:
    # connexion chains two APIs under one base path; their operation ids may repeat.
    import flask
    from connexion.spec import Specification

    from connexion_ext.dispatch import RULES
    from connexion_ext.operations import add_prepared_api
    from tests.helpers import ROOT

    spec = Specification.load(ROOT / "openapi.yaml")
    flask_app = flask.Flask(__name__)
    add_prepared_api(flask_app, spec)
    assert all(flask_app.extensions[RULES].values())
    add_prepared_api(flask_app, spec, name="second")
    assert not any(flask_app.extensions[RULES].values())


def test_url_for_works_in_a_request_dispatched_without_flasks_url_map(app) -> None:  # type: ignore[no-untyped-def]
    import flask

    built = []
    with app.test_client(headers={"X-API-Key": WRITE_KEY}) as client:
        client.get("/v1")  # connexion adds the API to Flask on the first request
        rules = app.app.url_map.iter_rules()
        endpoint = next(rule.endpoint for rule in rules if rule.endpoint.endswith("_get_user"))
        relative = "." + endpoint.rpartition(".")[2]
        original = app.app.view_functions[endpoint]

        def view(**kwargs):  # type: ignore[no-untyped-def]
            built.append((flask.request.endpoint, flask.url_for(endpoint, user_id=42)))
            built.append(flask.url_for(relative, user_id=43))
            return original(**kwargs)

        app.app.view_functions[endpoint] = view
        assert client.get("/v1/users/41").status_code == 404
    assert built == [(endpoint, "/v1/users/42"), "/v1/users/43"]
