"""Request ids, JSON log lines and metrics, read from the real log output."""

import io
import json
import logging
import os
import re
import warnings

import pytest
import sqlalchemy as sa
import structlog
from flask import g

from logging_ext.setup import choose_format, configure_logging
from problems import SERVER_FAILED
from tests.helpers import WRITE_KEY, log_lines, parsed, plain_id

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


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
        assert errors[0]["event"] == "unhandled exception"
        assert errors[0]["exception"][0]["exc_type"] == "OperationalError"
        assert body["detail"] == SERVER_FAILED

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

    @pytest.mark.parametrize("bad", ["", "a b", "x" * 129, "<script>", "ü"], ids=plain_id)
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

    def test_each_write_logs_what_it_did_under_its_request_id(self, client, capsys):
        user_id = client.post("/v1/users", json={"name": "Ada", "age": 36}).json()["id"]
        location = f"/v1/users/{user_id}"
        capsys.readouterr()
        writes = [
            client.put(location, json={"name": "Eve", "age": 3}),
            client.patch(
                location,
                content=b'{"age": 4}',
                headers={"Content-Type": "application/merge-patch+json"},
            ),
            client.delete(location),
        ]
        assert [response.status_code for response in writes] == [200, 200, 204]
        events = [
            (line["event"], line["user_id"], line.get("fields"), line["request_id"])
            for line in log_lines(capsys)
            if line["logger"] == "handlers.users"
        ]
        ids = [response.headers["x-request-id"] for response in writes]
        assert events == [
            ("user updated", user_id, ["age", "name"], ids[0]),
            ("user updated", user_id, ["age"], ids[1]),
            ("user deleted", user_id, None, ids[2]),
        ]

    def test_a_request_binds_nothing_into_the_next_one_on_its_connection(
        self, app, to_wsgi, capsys
    ):
        # gunicorn serves a keep-alive connection's requests one after another in one
        # greenlet, so one context: what the first bound (its id, its key's name) must be
        # gone when the second, keyless one is logged.
        from tests.helpers import call_wsgi, wsgi_environ

        wsgi = to_wsgi(app)
        capsys.readouterr()
        assert call_wsgi(wsgi, wsgi_environ("/v1/users"))[0].startswith("200")
        anonymous = wsgi_environ("/v1/users")
        del anonymous["HTTP_X_API_KEY"]
        status, headers, _ = call_wsgi(wsgi, anonymous)
        assert status.startswith("401")
        second = access_line(log_lines(capsys), headers["x-request-id"])
        assert "api_key" not in second
        assert structlog.contextvars.get_contextvars() == {}

    def test_flask_g_holds_the_id_inside_flask(self, app, client):
        app.app.add_url_rule("/_test/g", "g_probe", lambda: {"seen": g.request_id})
        response = client.get("/_test/g")
        assert response.json()["seen"] == response.headers["x-request-id"]


class TestLogLines:
    def test_the_duration_is_in_milliseconds_to_the_microsecond(self, client, capsys, monkeypatch):
        from types import SimpleNamespace

        from logging_ext import middleware

        clock = iter([10.0, 10.00123456])  # the request's start and end
        monkeypatch.setattr(middleware, "time", SimpleNamespace(perf_counter=clock.__next__))
        capsys.readouterr()
        response = client.get("/healthz")
        line = access_line(log_lines(capsys), response.headers["x-request-id"])
        assert line["duration_ms"] == 1.235

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

    def test_the_line_counts_every_chunk_and_a_plausible_duration(self, capsys):
        # ASGI allows an answer without a header list and a body in several messages.
        import asyncio

        from logging_ext.middleware import RequestLogMiddleware

        async def chunked(scope, receive, send):  # type: ignore[no-untyped-def]
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"abc", "more_body": True})
            await send({"type": "http.response.body", "body": b"de"})

        sent: list[dict] = []

        async def send(message):  # type: ignore[no-untyped-def]
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "client": None}
        configure_logging(level="INFO", log_format="json")
        capsys.readouterr()
        asyncio.run(RequestLogMiddleware(chunked)(scope, None, send))
        [line] = [line for line in log_lines(capsys) if line.get("event") == "request"]
        assert line["response_bytes"] == 5 and line["status"] == 200
        assert 0 < line["duration_ms"] < 10_000
        assert sent[0]["headers"] == [(b"x-request-id", line["request_id"].encode())]

    def test_an_answer_never_started_is_logged_as_500(self, capsys):
        import asyncio

        from logging_ext.middleware import RequestLogMiddleware

        async def fails(scope, receive, send):  # type: ignore[no-untyped-def]
            raise RuntimeError("before any answer")

        scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "client": None}
        configure_logging(level="INFO", log_format="json")
        capsys.readouterr()
        with pytest.raises(RuntimeError):
            asyncio.run(RequestLogMiddleware(fails)(scope, None, None))
        [line] = [line for line in log_lines(capsys) if line.get("event") == "request"]
        assert (line["status"], line["response_bytes"]) == (500, 0)

    def test_the_extension_defaults_to_info_a_format_by_terminal_and_no_proxies(self):
        from logging_ext import JsonLogging

        extension = JsonLogging()  # Flask style: made bare, init_app(app) later
        assert (extension.level, extension.log_format, extension.trusted_proxies) == (
            "INFO",
            None,
            (),
        )

    def test_a_client_behind_a_trusted_proxy_is_logged_by_its_own_address(self, settings, capsys):
        from dataclasses import replace

        from app import create_app
        from logging_ext import JsonLogging

        app = create_app(replace(settings, trusted_proxies=("10.0.0.0/8",)))
        assert isinstance(app.app.extensions["json_logging"], JsonLogging)  # Flask's registry
        capsys.readouterr()
        with app.test_client(client=("10.0.0.2", 5000)) as proxied:
            response = proxied.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
        app.app.extensions["user_store"].engine.dispose()
        line = access_line(log_lines(capsys), response.headers["x-request-id"])
        assert line["client"] == "203.0.113.7"

    def test_bodies_are_never_logged(self, client, capsys):
        capsys.readouterr()
        created = client.post("/v1/users", json={"name": "Very Private Name", "age": 36})
        refused = client.post("/v1/users", json={"name": "Other Secret", "age": "x"})
        assert (created.status_code, refused.status_code) == (201, 400)
        out = capsys.readouterr().out  # read once: a second read finds nothing
        lines = parsed(out)
        for response in (created, refused):  # what both requests logged is all here
            access_line(lines, response.headers["x-request-id"])
        assert "Private" not in out
        assert "Secret" not in out


class TestClientAddress:
    """X-Forwarded-For is believed only from configured proxies."""

    @pytest.fixture
    def client_address(self):
        from logging_ext import ClientAddress

        return ClientAddress(trusted_proxies=["10.0.0.0/8", "192.0.2.1"])

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
    def test_client_address(self, client_address, peer, forwarded, client):
        scope = {"client": (peer, 5000)}
        headers = {"x-forwarded-for": forwarded} if forwarded else {}
        assert client_address(scope, headers) == client

    def test_invalid_proxy_configuration_is_refused(self):
        from logging_ext.client import parse_networks

        with pytest.raises(ValueError, match="testclient"):
            parse_networks(["testclient"])


class TestMetrics:
    def counter(self, client, operation, status):
        text = client.get("/metrics").text
        method = {"create_user": "POST"}.get(operation, "GET")
        pattern = (
            rf'http_requests_total\{{method="{method}",operation="{operation}",'
            rf'status="{status}"\}} ([0-9.]+)'
        )
        return sum(float(v) for v in re.findall(pattern, text))

    def test_the_scrape_is_logged_as_metrics(self, client, capsys):
        capsys.readouterr()
        response = client.get("/metrics")
        line = access_line(log_lines(capsys), response.headers["x-request-id"])
        assert line["operation_id"] == "metrics"

    def test_each_label_sets_children_are_found_once(self):
        from logging_ext import metrics

        metrics.count_request("probe_op", "GET", 200, 0.01)
        found = metrics._request_children[("probe_op", "GET", 200)]
        metrics.count_request("probe_op", "GET", 200, 0.01)
        assert metrics._request_children[("probe_op", "GET", 200)] is found

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
        def sample(text, name):
            found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
            return float(found.group(1)) if found else 0.0

        timed = 'http_request_duration_seconds_count{operation="user_page"}'
        before = client.get("/metrics").text
        for _ in range(2):
            client.get("/v1/users")
        text = client.get("/metrics").text
        assert sample(text, timed) == sample(before, timed) + 2
        assert 'http_request_duration_seconds_bucket{le="0.005",operation="user_page"}' in text
        # Only the scrape itself is in flight while it is answered, before and after.
        assert sample(before, "http_requests_in_flight") == 1.0
        assert sample(text, "http_requests_in_flight") == 1.0


class TestAcrossWorkers:
    """gunicorn's workers: each writes its samples to PROMETHEUS_MULTIPROC_DIR and logs its
    own pid; the scrape adds the files up; a dead worker's live gauges are dropped."""

    @pytest.fixture
    def worker_values(self, tmp_path, monkeypatch):
        from prometheus_client import values

        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        return values.MultiProcessValue(process_identifier=lambda: 4242)

    def test_the_scrape_adds_up_what_the_workers_wrote(self, worker_values):
        from prometheus_client import CONTENT_TYPE_LATEST

        from logging_ext import metrics

        worker_values("counter", "probe_total", "probe_total", (), (), "A probe.").inc(3)
        text, content_type = metrics.exposition()
        assert content_type == CONTENT_TYPE_LATEST
        assert "probe_total 3.0" in text.decode()
        assert "http_requests_in_flight" not in text.decode()  # this process wrote no file

    def test_a_dead_workers_live_gauges_are_dropped(self, worker_values, tmp_path, monkeypatch):
        from logging_ext import metrics

        gauge = worker_values("gauge", "probe", "probe", (), (), "A probe.", "livesum")
        gauge.set(1)
        written = tmp_path / "gauge_livesum_4242.db"
        metrics.mark_worker_dead(4243)
        assert written.exists()  # another worker's death leaves this one's gauges
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
        metrics.mark_worker_dead(4242)  # one process, no files: nothing to drop
        assert written.exists()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        metrics.mark_worker_dead(4242)
        assert not written.exists()

    def test_a_forked_worker_logs_its_own_pid(self):
        from logging_ext.setup import current_pid

        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the worker: report, and leave without running pytest's cleanup
            os.write(write, str(current_pid()).encode())
            os._exit(0)
        os.close(write)
        reported = int(os.read(read, 32))
        os.close(read)
        os.waitpid(child, 0)
        assert reported == child != current_pid() == os.getpid()


class TestLoggingSetup:
    """configure_logging: every logger, ours and the libraries', one JSON line each."""

    @pytest.fixture(autouse=True)
    def restore(self):
        yield
        configure_logging(level="INFO", log_format="json")

    @staticmethod
    def emit(capsys):
        capsys.readouterr()
        structlog.get_logger("users_api.probe").info("ours", n=1)
        structlog.get_logger("users_api.probe").warning("ours too")
        logging.getLogger("gunicorn.error").info("booting worker")
        logging.getLogger("gunicorn.access").info("an access line of gunicorn's own")
        logging.getLogger("alembic.runtime.migration").info("running upgrade")
        logging.getLogger("alembic.runtime.migration").warning("a migration warning")
        return capsys.readouterr().out

    def test_each_logger_is_routed_as_the_config_says(self):
        # A library's logger made before the set-up keeps logging, through the root.
        early = logging.getLogger("made.before.configure")
        early.disabled = False
        for name in ("gunicorn.error", "gunicorn.access"):  # gunicorn attaches its own
            logging.getLogger(name).addHandler(logging.NullHandler())
        # Whatever an earlier configuration in this process left (levels, propagation,
        # the warnings hook) is undone first, so what follows is this call's doing.
        quiet = ("alembic", "storage.pool", "connexion.middleware.swagger_ui")
        for name in (*quiet, "connexion.validators.json"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger("gunicorn.access").propagate = True
        logging.captureWarnings(False)
        configure_logging(level="warning", log_format="json")
        assert warnings.showwarning.__module__ == "logging"  # warnings become records
        root = logging.getLogger()
        assert root.level == logging.WARNING
        assert [type(h).__name__ for h in root.handlers] == ["StdoutHandler"]
        error, access = logging.getLogger("gunicorn.error"), logging.getLogger("gunicorn.access")
        assert (error.handlers, error.propagate, error.level) == ([], True, logging.WARNING)
        assert (access.handlers, access.propagate) == ([], False)
        for name in quiet:
            assert logging.getLogger(name).level == logging.WARNING, name
        # Its response-validation warning quotes the value (users' data).
        assert logging.getLogger("connexion.validators.json").level == logging.ERROR
        assert not early.disabled

    def test_json_lines_from_every_logger_that_should_speak(self, capsys):
        configure_logging(level="INFO", log_format="json")
        lines = parsed(self.emit(capsys))
        assert [(line["logger"], line["level"], line["event"]) for line in lines] == [
            ("users_api.probe", "info", "ours"),
            ("users_api.probe", "warning", "ours too"),
            ("gunicorn.error", "info", "booting worker"),
            ("alembic.runtime.migration", "warning", "a migration warning"),
        ]
        assert lines[0]["n"] == 1 and lines[2]["pid"] == os.getpid()

    def test_a_logger_made_without_a_name_says_none(self, capsys):
        configure_logging(level="INFO", log_format="json")
        structlog.get_logger().info("nameless")
        [line] = parsed(capsys.readouterr().out)
        assert (line["logger"], line["event"]) == ("", "nameless")

    def test_the_level_applies_to_ours_and_theirs(self, capsys):
        configure_logging(level="warning", log_format="json")
        lines = parsed(self.emit(capsys))
        assert [line["event"] for line in lines] == ["ours too", "a migration warning"]

    def test_the_console_format_is_for_people(self, capsys):
        configure_logging(level="INFO", log_format="console")
        out = self.emit(capsys)
        assert "ours" in out and "booting worker" in out
        assert not out.lstrip().startswith("{")

    def test_the_extension_applies_its_level_and_format(self, capsys):
        from logging_ext import JsonLogging

        class App:  # what init_app touches of a connexion FlaskApp
            def add_middleware(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                pass

            app = type("Flask", (), {"extensions": {}})()

        JsonLogging(App(), level="warning", log_format="console")  # type: ignore[arg-type]
        out = self.emit(capsys)
        assert "ours too" in out and "booting worker" not in out
        assert not out.lstrip().startswith("{")

    @pytest.mark.parametrize(("tty", "chosen"), [(True, "console"), (False, "json")])
    def test_without_a_choice_a_terminal_gets_the_console_format(self, tty, chosen):
        class Stream(io.StringIO):
            def isatty(self):
                return tty

        assert choose_format(None, Stream()) == chosen
        assert choose_format("json", Stream()) == "json"
        assert choose_format("console", Stream()) == "console"

    def test_an_unknown_format_is_refused_by_name(self):
        with pytest.raises(ValueError, match="LOG_FORMAT must be json or console, got 'xml'"):
            choose_format("xml", io.StringIO())


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("name", "age", "quoted"),
    [
        (None, 36, ", 36,"),  # NOT NULL: "Failing row contains (1, null, 36, ...)"
        # a name over two lines: the DETAIL quotes it raw, both lines of it
        ("Ada\nLovelace secret", None, "Lovelace secret"),
    ],
    ids=["null-name", "two-line-name"],
)
def test_a_database_error_is_logged_without_the_data_it_quotes(
    postgres_url, capsys, name, age, quoted
):
    # PostgreSQL's DETAIL names the refused row; the log keeps the error, not the row.
    import storage
    from tests.helpers import migrated

    engine = storage.make_engine(migrated(postgres_url))
    try:
        with pytest.raises(sa.exc.IntegrityError) as refused:
            storage.UserStore(engine).create(name=name, age=age)
    finally:
        engine.dispose()
    assert "Failing row contains (" in str(refused.value) and quoted in str(refused.value)
    configure_logging(level="INFO", log_format="json")
    capsys.readouterr()
    structlog.get_logger("users_api.probe").error("unhandled exception", exc_info=refused.value)
    [line] = parsed(capsys.readouterr().out)
    values = " ".join(stack["exc_value"] for stack in line["exception"])  # with its cause
    assert "constraint" in values and "[SQL: " in values
    assert "\nDETAIL: (left out: it quotes the data)\n" in values
    # (the whole line: its timestamp may hold "36" too, so the row is looked for as quoted)
    assert "Failing row contains" not in json.dumps(line) and quoted not in json.dumps(line)


def test_a_value_orjson_refuses_still_makes_one_json_line(capsys):
    # orjson raises on keys that are not strings and on integers past 64 bits; a log
    # call must never raise into the request that logs.
    configure_logging(level="INFO", log_format="json")
    capsys.readouterr()
    log = structlog.get_logger("users_api.probe")
    log.info("odd", counts={1: "one"}, big=2**70, obj=object(), name="张三")
    out = capsys.readouterr().out
    [line] = parsed(out)
    assert line["counts"] == {"1": "one"} and line["big"] == 2**70
    assert line["obj"].startswith("<object object at")
    assert '"name":"张三"' in out.replace(" ", "")  # UTF-8 as written, like every other line
