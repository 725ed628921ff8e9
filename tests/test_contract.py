"""The contract, fuzzed in-process: schemathesis drives the ASGI app from openapi.yaml.

Response validation is on in the test settings, so connexion checks every answer
against the spec too. Examples are bounded and seeded by hypothesis's database-free
defaults; `make fuzz` (live server) goes deeper.
"""

from dataclasses import replace

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.config import SchemathesisConfig

from contract import load_spec, operations
from tests.helpers import ROOT, WRITE_KEY, migrated

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


# The service as it starts by default, and with the opt-in guards on: every write must
# name the version it changes (428 without If-Match) and every answer carries RateLimit
# fields (limits far above what the fuzzer sends, so no case is refused for its pace).
GUARDED = {
    "require_if_match": True,
    "rate_limits": "read=1000/second,write=1000/second,unknown=1000/second",
}


@pytest.fixture(
    name="settings",
    params=["default", "guarded", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def service_settings(request, settings):  # type: ignore[no-untyped-def]
    if request.param == "guarded":
        return replace(settings, **GUARDED)
    if request.param == "postgresql":  # as it starts by default, on the real server
        return replace(settings, database_url=migrated(request.getfixturevalue("postgres_url")))
    return settings


@pytest.fixture
def api_schema(app, monkeypatch):
    # schemathesis.toml takes the key from here, as `make contract` does.
    monkeypatch.setenv("USERS_API_KEY", WRITE_KEY)
    config = SchemathesisConfig.from_path(ROOT / "schemathesis.toml")
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", app, config=config)

    # The Python API does not apply the toml's [auth] section: tell schemathesis how a
    # client authenticates, so it also knows which requests it sends without the key.
    @schema.auth()
    class ApiKey:
        def get(self, case, context):
            return WRITE_KEY

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "X-API-Key": data}

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ
def test_every_operation_honours_the_contract(case):
    response = case.call_and_validate()
    # The fuzzer holds a write key: were it refused, the run would prove nothing. (Cases
    # that test missing auth have the key stripped by schemathesis: 401, or 404 for a
    # path no operation matches, which reveals nothing either.)
    if "X-API-Key" in response.request.headers:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code in (401, 404), response.text


def test_stateful_sequences_follow_the_links(api_schema):
    """create -> read -> update -> delete -> read, chained through the spec's OpenAPI links."""
    run_state_machine_as_test(
        api_schema.as_state_machine(),
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def _walk(node, path=""):  # type: ignore[no-untyped-def]
    """Every mapping in the spec, with where it is."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def test_every_status_the_service_sends_is_documented():
    """What any request can meet, by where it is stopped (schemathesis checks the rest)."""
    spec = load_spec()
    for path, method, operation in operations(spec):
        statuses = set(operation["responses"])
        # parameters, BODY_TIMEOUT, MAX_BODY_BYTES, and what gunicorn refuses (line, headers)
        expected = {"400", "408", "413", "414", "431", "500"}
        if operation.get("security", spec["security"]):
            expected |= {"401", "429", "503"}  # the key, rate limits, the database
        if method in ("post", "put", "patch"):
            expected |= {"403", "415"}
        if method in ("put", "patch", "delete"):
            expected |= {"403", "404", "412", "428"}
        assert expected <= statuses, f"{method} {path} lacks {sorted(expected - statuses)}"


def test_numbers_read_the_same_in_every_tool():
    for where, node in _walk(load_spec()):
        # OpenAPI 3.0's boolean exclusiveMaximum/Minimum is a number in 3.1 and JSON Schema.
        assert not {"exclusiveMaximum", "exclusiveMinimum"} & node.keys(), where
        if node.get("type") == "integer" and node.get("format") == "int64":
            # JavaScript holds integers exactly up to 2^53-1 (Number.MAX_SAFE_INTEGER).
            assert node.get("maximum", 2**63) <= 2**53 - 1, where
    user_id = load_spec()["components"]["schemas"]["UserId"]
    assert user_id["maximum"] == 2**53 - 1
