"""structlog over the standard library: every logger's records become one JSON object a line."""

import json
import logging
import logging.config
import os
import re
import sys
import warnings
from typing import Any, TextIO

import orjson
import structlog
import structlog.tracebacks
from structlog.typing import EventDict, Processor, WrappedLogger

# connexion imports starlette's TestClient at import time, which warns about httpx on
# every start. It is not ours to fix and says nothing about this service.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """This process's id, kept across forks, without a system call per log line."""
    return _pid


def add_pid(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Which gunicorn worker wrote the line."""
    event_dict["pid"] = _pid
    return event_dict


# Run on every event, structlog's own and foreign (stdlib) records alike.
SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,  # request_id while a request is in flight
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    add_pid,
]


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is now (so test capture and redirection just work)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def choose_format(log_format: str | None, stream: TextIO) -> str:
    """JSON for machines; the console renderer only for a person at a terminal."""
    if log_format:
        if log_format not in ("json", "console"):
            raise ValueError(f"LOG_FORMAT must be json or console, got {log_format!r}")
        return log_format
    return "console" if stream.isatty() else "json"


def formatter(log_format: str) -> structlog.stdlib.ProcessorFormatter:
    """How the standard library's records (gunicorn, connexion, ...) are rendered."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_render(log_format),
        ],
    )


def _render(log_format: str) -> list[Processor]:
    if log_format == "console":
        return [structlog.dev.ConsoleRenderer()]
    # Exceptions become a structured `exception` field, rendered once, without the frames'
    # local variables: those hold API keys, request bodies and users' data.
    return [
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        drop_database_details,
        # orjson, as structlog's performance notes advise: a third of a line's cost with
        # the standard library's json. UTF-8 as written; a value orjson cannot serialise
        # is written as its repr (structlog's fallback), a line orjson refuses (a key
        # that is not a string, an integer past 64 bits) by the standard library.
        structlog.processors.JSONRenderer(serializer=_json_line),
    ]


# From DETAIL: to the next part of the message (HINT:, CONTEXT:, ... or SQLAlchemy's
# [SQL: ...]) or its end: a quoted value may itself run over several lines.
_DETAIL = re.compile(r"^DETAIL:.*?(?=\n[A-Z ]+:  |\n\[SQL: |\Z)", re.MULTILINE | re.DOTALL)


def drop_database_details(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """PostgreSQL's DETAIL line quotes the row or key it refused ("Failing row contains
    (7, Ada, 36, ...)", "Key (name)=(Ada) already exists"): users' data, which a log must
    not hold. (SQLAlchemy's hide_parameters hides only the statement's parameters.)"""
    for stack in event_dict.get("exception", ()):
        value = stack.get("exc_value")
        if isinstance(value, str) and "DETAIL:" in value:
            stack["exc_value"] = _DETAIL.sub("DETAIL: (left out: it quotes the data)", value)
    return event_dict


def _json_line(event_dict: EventDict, **options: Any) -> str:
    try:
        return orjson.dumps(event_dict, **options).decode()
    except TypeError:  # keys that are not strings, integers past 64 bits
        return json.dumps(event_dict, ensure_ascii=False, **options)


class StdoutLogger:
    """structlog's output for our own events: one line on whatever sys.stdout is now.

    Our events skip the standard library's record, handler and formatter (a third of a
    request's logging cost); they get the same processors, so every line has one shape.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name  # read by add_logger_name

    def msg(self, message: str) -> None:
        stream = sys.stdout
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = error = critical = exception = fatal = log = msg


def configure_logging(level: str, log_format: str | None) -> None:
    """Our events straight to stdout, every stdlib logger through one handler there too."""
    log_format = choose_format(log_format, sys.stdout)
    logging.config.dictConfig(logging_config(level, log_format))
    logging.captureWarnings(True)
    structlog.configure(
        processors=[*SHARED_PROCESSORS, *_render(log_format)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=StdoutLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """A dictConfig for the root logger; gunicorn's loggers propagate into it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {"()": "logging_ext.setup.formatter", "log_format": log_format}
        },
        "handlers": {
            "stdout": {"class": "logging_ext.setup.StdoutHandler", "formatter": "structured"}
        },
        "root": {"handlers": ["stdout"], "level": level.upper()},
        "loggers": {
            # gunicorn attaches its own handlers; hand its records to the root instead.
            "gunicorn.error": {"handlers": [], "propagate": True, "level": level.upper()},
            "gunicorn.access": {"handlers": [], "propagate": False},
            # Alembic narrates every migration step at INFO; keep its warnings only.
            "alembic": {"level": "WARNING"},
            # SQLAlchemy's pool (our FairQueuePool logs under its module's name) tells each
            # dispose and re-creation at INFO; connexion tells where it serves the spec.
            "storage.pool": {"level": "WARNING"},
            "connexion.middleware.swagger_ui": {"level": "WARNING"},
            # Its response-validation warnings quote the value that broke the schema (users'
            # data); problems.contract_problem logs where it broke instead.
            "connexion.validators.json": {"level": "ERROR"},
        },
    }
