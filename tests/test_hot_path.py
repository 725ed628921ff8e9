"""Work done once at start-up instead of on every request. (How fast: `make bench`.)"""

from collections import Counter

METHODS = ("get", "put", "post", "patch", "delete")


def test_each_operation_validates_each_parameter_once(app, client) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3 appends a path's shared parameters to the operation's own list, in
    # place, each time one of its middlewares builds the operation: six copies of
    # user_id, each validated (deep copy, new validator) on every request.
    assert client.get("/v1/users/1").status_code == 404  # the middleware stack is built
    spec = app.middleware.apis[0].specification  # the contract as connexion holds it
    for path, item in spec["paths"].items():
        for method in METHODS & item.keys():
            names = Counter((p["name"], p["in"]) for p in item[method].get("parameters", []))
            repeated = [name for name, count in names.items() if count > 1]
            assert not repeated, f"{method.upper()} {path} repeats {repeated}"


def test_path_parameters_still_apply_to_every_operation_of_their_path(client) -> None:  # type: ignore[no-untyped-def]
    for method in ("get", "put", "patch", "delete"):
        response = client.request(method, "/v1/users/0", json={"name": "x", "age": 1})
        assert response.status_code == 400, method
        assert "minimum of 1" in response.json()["detail"], method


def test_validators_are_built_once_per_schema_not_per_request(client) -> None:  # type: ignore[no-untyped-def]
    from middleware import validators

    def exchange() -> None:
        created = client.post("/v1/users", json={"name": "Ada", "age": 36})
        assert client.get(created.headers["Location"]).status_code == 200

    exchange()
    built = dict(validators._validators)
    for _ in range(3):
        exchange()
    assert validators._validators == built
    assert built, "the request went through the cached validators"


def test_each_operation_builds_its_decorator_chain_once(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3 rebuilds the parameter and response decorators of the operation
    # (inspecting the handler's signature) on every request.
    from connexion.decorators.main import BaseDecorator

    built = []
    decorate = BaseDecorator.decorate

    def counting(self, function):  # type: ignore[no-untyped-def]
        built.append(function.__name__)
        return decorate(self, function)

    monkeypatch.setattr(BaseDecorator, "decorate", counting)
    for _ in range(3):
        assert client.get("/v1/users?limit=1").status_code == 200
    assert built.count("user_page") <= 1


def test_operations_without_a_body_never_parse_one(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3 asks every request for its body and its form files, even a GET.
    from connexion.lifecycle import WSGIRequest

    read = []
    for name in ("get_body", "files"):
        original = getattr(WSGIRequest, name)

        def counting(self, _original=original, _name=name):  # type: ignore[no-untyped-def]
            read.append(_name)
            return _original(self)

        monkeypatch.setattr(WSGIRequest, name, counting)
    created = client.post("/v1/users", json={"name": "Ada", "age": 36})
    assert created.status_code == 201
    assert "get_body" in read, "an operation with a body still reads it"
    read.clear()
    assert client.get(created.headers["Location"]).status_code == 200
    assert client.get("/v1/users?limit=1").status_code == 200
    assert read == []


def test_each_operation_builds_its_uri_parser_once(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # connexion 3.3's Flask decorator builds one for every request.
    from connexion.decorators.main import BaseDecorator

    built = []
    original = BaseDecorator.uri_parser.fget

    def counting(self):  # type: ignore[no-untyped-def]
        built.append(1)
        return original(self)

    monkeypatch.setattr(BaseDecorator, "uri_parser", property(counting))
    for _ in range(3):
        assert client.get("/v1/users?limit=1").status_code == 200
    assert len(built) <= 1


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
    assert client.get("/v1/ui", follow_redirects=False).status_code in (301, 302, 307, 308)
    assert routed.sets == 3


def test_swagger_ui_is_found_under_a_root_path(app) -> None:  # type: ignore[no-untyped-def]
    # Behind a proxy that mounts the service at /api (SCRIPT_NAME), routes match the path
    # below the root path, for the UI as for the API.
    from tests.keys import WRITE_KEY

    with app.test_client(root_path="/api", headers={"X-API-Key": WRITE_KEY}) as mounted:
        assert "swagger-ui" in mounted.get("/api/v1/ui/").text
        assert mounted.get("/api/v1/openapi.json").json()["info"]["title"] == "users-api"
        assert mounted.get("/api/v1/users?limit=1").status_code == 200
