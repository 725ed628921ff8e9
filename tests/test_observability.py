"""Request ids, JSON log lines and metrics, read from the real log output."""

import json
import re

import pytest
import sqlalchemy as sa
from flask import g

from tests.keys import WRITE_KEY

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


def log_lines(capsys):
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # fails if any line is not JSON


def access_line(lines, request_id):
    matches = [
        line
        for line in lines
        if line["logger"] == "users_api.access" and line["request_id"] == request_id
    ]
    assert len(matches) == 1, lines
    return matches[0]


@pytest.fixture
def break_database(app):
    """A real fault: the users table disappears under the running app."""

    def breaker():
        with app.app.extensions["user_store"].engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE users"))

    return breaker


class TestRequestId:
    @pytest.mark.parametrize(
        ("method", "path", "kwargs", "status"),
        [
            ("post", "/v1/users", {"json": {"name": "Ada", "age": 36}}, 201),
            ("post", "/v1/users", {"json": {"name": "Ada"}}, 400),
            ("get", "/nowhere", {}, 404),
            ("delete", "/v1/users", {}, 405),
            ("get", "/v1/users/1", {}, 404),
        ],
    )
    def test_every_response_has_an_id_matching_its_access_line(
        self, client, capsys, method, path, kwargs, status
    ):
        capsys.readouterr()
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == status
        request_id = response.headers["x-request-id"]
        assert UUID4.match(request_id)
        line = access_line(log_lines(capsys), request_id)
        assert line["status"] == status
        assert line["method"] == method.upper()
        assert line["path"] == path
        if status >= 400:
            assert response.json()["request_id"] == request_id

    def test_a_server_error_is_a_problem_with_the_id_and_a_logged_exception(
        self, client, capsys, break_database
    ):
        break_database()
        capsys.readouterr()
        response = client.get("/v1/users/1")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        request_id = response.headers["x-request-id"]
        assert body["request_id"] == request_id
        assert "users" not in body["detail"] and "SELECT" not in response.text
        lines = log_lines(capsys)
        assert access_line(lines, request_id)["status"] == 500
        errors = [line for line in lines if line["level"] == "error"]
        assert len(errors) == 1
        assert errors[0]["request_id"] == request_id
        assert errors[0]["exception"][0]["exc_type"] == "OperationalError"

    def test_a_server_error_logs_neither_the_key_nor_the_body(self, client, capsys, break_database):
        break_database()
        capsys.readouterr()
        response = client.post("/v1/users", json={"name": "Very Private Name", "age": 36})
        assert response.status_code == 500
        out = capsys.readouterr().out
        assert '"exception"' in out  # the traceback is logged...
        assert WRITE_KEY not in out  # ...without the frames' local variables
        assert "Private" not in out

    def test_a_good_incoming_id_is_kept(self, client, capsys):
        response = client.get("/v1/users", headers={"X-Request-ID": "edge-42.a:b_c"})
        assert response.headers["x-request-id"] == "edge-42.a:b_c"
        assert access_line(log_lines(capsys), "edge-42.a:b_c")["status"] == 200

    @pytest.mark.parametrize("bad", ["", "a b", "x" * 129, "<script>", "ü"])
    def test_an_unacceptable_incoming_id_is_replaced(self, client, bad):
        response = client.get("/v1/users", headers={"X-Request-ID": bad.encode()})
        assert UUID4.match(response.headers["x-request-id"])

    def test_handler_events_share_the_id_of_their_access_line(self, client, capsys):
        capsys.readouterr()
        response = client.post("/v1/users", json={"name": "Ada", "age": 36})
        request_id = response.headers["x-request-id"]
        lines = log_lines(capsys)
        events = [line for line in lines if line["event"] == "user created"]
        assert len(events) == 1
        assert events[0]["request_id"] == request_id
        assert events[0]["user_id"] == response.json()["id"]
        assert access_line(lines, request_id)["operation_id"] == "create_user"

    def test_flask_g_holds_the_id_inside_flask(self, app, client):
        app.app.add_url_rule("/_test/g", "g_probe", lambda: {"seen": g.request_id})
        response = client.get("/_test/g")
        assert response.json()["seen"] == response.headers["x-request-id"]


class TestLogLines:
    def test_every_line_has_the_indexable_fields(self, client, capsys):
        client.post("/v1/users", json={"name": "Ada", "age": 36})
        client.get("/v1/users/999")
        lines = log_lines(capsys)
        assert lines
        for line in lines:
            assert {"timestamp", "level", "logger", "event"} <= line.keys()
            assert line["timestamp"].endswith("Z")

    def test_access_line_fields(self, client, capsys):
        capsys.readouterr()
        response = client.get("/v1/users", headers={"User-Agent": "probe/1.0"})
        line = access_line(log_lines(capsys), response.headers["x-request-id"])
        assert line["operation_id"] == "user_page"
        assert line["response_bytes"] == len(response.content)
        assert line["user_agent"] == "probe/1.0"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
        assert line["client"]

    def test_bodies_are_never_logged(self, client, capsys):
        client.post("/v1/users", json={"name": "Very Private Name", "age": 36})
        client.post("/v1/users", json={"name": "Other Secret", "age": "x"})
        assert "Private" not in capsys.readouterr().out
        assert "Secret" not in capsys.readouterr().out


class TestClientAddress:
    """X-Forwarded-For is believed only from configured proxies."""

    @pytest.fixture
    def middleware(self):
        from logging_ext.middleware import RequestLogMiddleware

        return RequestLogMiddleware(None, trusted_proxies=["10.0.0.0/8", "192.0.2.1"])

    @pytest.mark.parametrize(
        ("peer", "forwarded", "client"),
        [
            ("198.51.100.7", None, "198.51.100.7"),
            ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # untrusted peer: ignored
            ("10.1.2.3", "203.0.113.9", "203.0.113.9"),
            ("10.1.2.3", "203.0.113.9, 192.0.2.1", "203.0.113.9"),  # skip trusted hops
            ("10.1.2.3", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # spoofed left part
            ("10.1.2.3", "garbage", "garbage"),
            ("10.1.2.3", "192.0.2.1", "10.1.2.3"),  # only proxies: the peer
        ],
    )
    def test_client_address(self, middleware, peer, forwarded, client):
        scope = {"client": (peer, 5000)}
        headers = {"x-forwarded-for": forwarded} if forwarded else {}
        assert middleware._client(scope, headers) == client

    def test_invalid_proxy_configuration_is_refused(self):
        from logging_ext.middleware import parse_networks

        with pytest.raises(ValueError, match="testclient"):
            parse_networks(["testclient"])


class TestMetrics:
    def counter(self, client, operation, status):
        text = client.get("/metrics").text
        pattern = (
            rf'http_requests_total\{{method="[A-Z]+",operation="{operation}",'
            rf'status="{status}"\}} ([0-9.]+)'
        )
        return sum(float(v) for v in re.findall(pattern, text))

    def test_counts_requests_by_operation_and_status(self, client):
        before_ok = self.counter(client, "create_user", 201)
        before_bad = self.counter(client, "create_user", 400)
        for _ in range(3):
            client.post("/v1/users", json={"name": "Ada", "age": 36})
        client.post("/v1/users", json={"name": "Ada"})
        assert self.counter(client, "create_user", 201) == before_ok + 3
        assert self.counter(client, "create_user", 400) == before_bad + 1

    def test_invented_methods_share_one_label(self, client):
        other = re.compile(
            r'http_requests_total\{method="OTHER",operation="unmatched",status="405"\} ([0-9.]+)'
        )

        def others():
            found = other.search(client.get("/metrics").text)
            return float(found.group(1)) if found else 0.0

        before = others()
        for method in ("FOOBARQUUX", "XYZZYPLUGH"):
            assert client.request(method, "/healthz").status_code == 405
        assert others() == before + 2
        text = client.get("/metrics").text
        assert "FOOBARQUUX" not in text and "XYZZYPLUGH" not in text

    def test_exposes_latency_and_in_flight(self, client):
        client.get("/v1/users")
        text = client.get("/metrics").text
        assert 'http_request_duration_seconds_bucket{le="0.005",operation="user_page"}' in text
        assert "http_requests_in_flight" in text
