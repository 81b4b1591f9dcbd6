"""One logging path: every line a service writes is one JSON object on stdout, through the
stdlib logging and python-json-logger: the request line, Flask's and gunicorn's own lines.

Each line has ``time``, ``level``, ``logger`` and ``message``, then its own fields. gunicorn
applies LOGGING (gunicorn_conf), so its loggers hand their lines to the root's one handler.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from flask import Flask, g, request
from flask.wrappers import Response

# gunicorn ships no type information.
from gunicorn.glogging import Logger as GunicornLogger  # type: ignore[import-untyped]
from pythonjsonlogger.json import JsonFormatter

# Fields a service adds to its request lines, read at the end of the request (e.g. flask.g).
LogExtra = Callable[[], Mapping[str, object]]

REQUEST_LOGGER = logging.getLogger("c2c_http.request")


def stdout_handler() -> logging.StreamHandler[TextIO]:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    return handler


# gunicorn's logconfig_dict: it replaces gunicorn's own handler (plain text on stderr); the
# level stays gunicorn's (--log-level). Its access log stays silent: the app logs each request.
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stdout": {"()": stdout_handler}},
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {"gunicorn.error": {"propagate": True}, "gunicorn.access": {"propagate": False}},
}


class NoAccessLogger(GunicornLogger):  # type: ignore[misc]  # an untyped base class
    """gunicorn's logger without its access log (gunicorn_conf's logger_class): with a
    logconfig_dict gunicorn counts the access log as on and formats its fields for every request
    (a few per cent of a worker's CPU), only for the silent gunicorn.access logger to drop them.
    The app logs each request itself (register_request_log)."""

    def access(self, resp: object, req: object, environ: object, request_time: object) -> None:
        return None


def register_request_log(app: Flask, service: str, extra: LogExtra | None = None) -> None:
    """One line per request (gunicorn's access log is off, to avoid doubles)."""

    def start_clock() -> None:
        g.started = time.perf_counter()

    def log_request(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        fields: dict[str, object] = {
            "service": service,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "ms": round(elapsed * 1000, 3),
        }
        if extra is not None:
            fields.update(extra())
        fields["remote"] = request.remote_addr
        REQUEST_LOGGER.info(
            "%s %s %s", request.method, request.path, response.status_code, extra=fields
        )
        return response

    app.before_request(start_clock)
    app.after_request(log_request)
