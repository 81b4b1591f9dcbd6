"""The external service: the published one; asks internal over the Docker network and relays."""

from __future__ import annotations

import json
import time

import requests
from flask import Flask, current_app, g, jsonify, request
from flask.wrappers import Response
from werkzeug.exceptions import HTTPException, InternalServerError

from external_service import views
from external_service.settings import Settings
from external_service.upstream import Upstream, UpstreamAnswerError

__all__ = ["Settings", "create_app"]

# How a failed call to internal is answered, first match wins (requests' ConnectTimeout is both
# a ConnectionError and a Timeout: no answer to the connect, i.e. unreachable, 502).
UPSTREAM_ERRORS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (requests.ConnectionError, 502, "upstream_unreachable", "internal refused or is unreachable"),
    (requests.Timeout, 504, "upstream_timeout", "internal did not answer within {read} s"),
    (requests.RequestException, 502, "upstream_failed", "the call to internal failed"),
    (UpstreamAnswerError, 502, "upstream_invalid", "internal gave an unusable answer"),
)


def create_app(settings: Settings | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SETTINGS"] = settings = settings or Settings.from_env()
    # All three before the routes exist: automatic OPTIONS answers and Werkzeug's slash redirects
    # ('', '//healthz', '/healthz//') would answer with an HTML body; only JSON is ever sent.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.merge_slashes = app.url_map.strict_slashes = False
    # One pooled keep-alive session per process: gunicorn builds the app in each worker after
    # the fork (no preload_app), so no connection is ever shared between processes.
    app.extensions["upstream"] = Upstream.from_settings(settings)
    app.register_blueprint(views.bp)
    # Flask finds this handler along the MRO of every error, Werkzeug's HTTP ones included.
    app.register_error_handler(Exception, _json_error)
    app.before_request(_start_clock)
    app.after_request(_log_request)
    return app


def _json_error(exc: Exception) -> Response:
    status, code, message = _describe_error(exc)
    response = jsonify(error=code, message=message, status=status)
    response.status_code = status
    if isinstance(exc, HTTPException):  # keep what it adds (Allow on a 405), not its text/html
        response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
    return response


def _describe_error(exc: Exception) -> tuple[int, str, str]:
    if isinstance(exc, HTTPException):
        return exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or exc.name
    for exc_type, status, code, message in UPSTREAM_ERRORS:
        if isinstance(exc, exc_type):
            # One line for the operator: an expected failure of a dependency, not a bug.
            current_app.logger.warning("%s: %r", code, exc)
            return status, code, message.format(read=current_app.config["SETTINGS"].read_timeout)
    # A bug: details go to the log (stderr), the client gets a 500 without internals.
    current_app.logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return _describe_error(InternalServerError())


def _start_clock() -> None:
    g.started = time.perf_counter()


def _log_request(response: Response) -> Response:
    """One JSON line per request on stdout (gunicorn's access log is off, to avoid doubles)."""
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    fields = {
        "service": "external",
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "ms": round(elapsed * 1000, 3),
        "upstream_ms": g.get("upstream_ms"),  # the share of ms spent waiting for internal
        "remote": request.remote_addr,
    }
    print(json.dumps(fields), flush=True)
    return response
