"""The internal service: says who it is and who called it; reachable only on the Docker network."""

from __future__ import annotations

import json
import time

from flask import Flask, current_app, g, jsonify, request
from flask.wrappers import Response
from werkzeug.exceptions import HTTPException, InternalServerError

from internal_service import views
from internal_service.settings import Settings

__all__ = ["Settings", "create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SETTINGS"] = settings or Settings.from_env()
    # All three before the routes exist: automatic OPTIONS answers and Werkzeug's slash redirects
    # ('', '//healthz', '/healthz//') would answer with an HTML body; only JSON is ever sent.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.merge_slashes = app.url_map.strict_slashes = False
    app.register_blueprint(views.bp)
    # Flask finds this handler along the MRO of every error, Werkzeug's HTTP ones included.
    app.register_error_handler(Exception, _json_error)
    app.before_request(_start_clock)
    app.after_request(_log_request)
    return app


def _json_error(exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        # Details go to the log (stderr); the client gets a generic 500 without internals.
        current_app.logger.error(
            "unhandled error in %s %s", request.method, request.path, exc_info=exc
        )
        exc = InternalServerError()
    status = exc.code or 500
    response = jsonify(
        error=exc.name.lower().replace(" ", "_"), message=exc.description, status=status
    )
    response.status_code = status
    # Keep what the error adds (Allow on a 405), not its text/html content type.
    response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
    return response


def _start_clock() -> None:
    g.started = time.perf_counter()


def _log_request(response: Response) -> Response:
    """One JSON line per request on stdout (gunicorn's access log is off, to avoid doubles)."""
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    fields = {
        "service": "internal",
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "ms": round(elapsed * 1000, 3),
        "remote": request.remote_addr,
    }
    print(json.dumps(fields), flush=True)
    return response
