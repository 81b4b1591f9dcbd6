"""One JSON line per request on stdout (gunicorn's access log is off, to avoid doubles)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from flask import Flask, g, request
from flask.wrappers import Response

# Fields a service adds to its lines, read at the end of the request (e.g. from flask.g).
LogExtra = Callable[[], Mapping[str, object]]


def register_request_log(app: Flask, service: str, extra: LogExtra | None = None) -> None:
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
        print(json.dumps(fields), flush=True)
        return response

    app.before_request(start_clock)
    app.after_request(log_request)
