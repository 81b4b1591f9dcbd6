"""JSON-only answers: routing that never answers HTML, and one handler for every error.

Each error answers ``{"error": <short code>, "message": <text>, "status": <int>}``.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, jsonify, request
from flask.wrappers import Response
from werkzeug.exceptions import HTTPException, InternalServerError

# (status, short code, message) of one error answer.
ErrorAnswer = tuple[int, str, str]
# A service's answer for the exceptions it expects (a failing dependency, say), or None.
DescribeError = Callable[[Exception], ErrorAnswer | None]


def json_only_routing(app: Flask) -> None:
    """Call before any route exists: automatic OPTIONS answers and Werkzeug's slash redirects
    ('', '//healthz', '/healthz//') would answer with an HTML body; only JSON is ever sent."""
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.merge_slashes = app.url_map.strict_slashes = False


def register_json_errors(app: Flask, describe: DescribeError | None = None) -> None:
    """Answer every error as JSON; ``describe`` names the service's expected failures."""

    def handle(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        answer = describe(exc) if describe is not None else None
        if answer is None:
            # A bug: details go to the log (stderr), the client gets a 500 without internals.
            current_app.logger.error(
                "unhandled error in %s %s", request.method, request.path, exc_info=exc
            )
            return _http_error(InternalServerError())
        return _json_error(*answer)

    # Flask finds this handler along the MRO of every error, Werkzeug's HTTP ones included.
    app.register_error_handler(Exception, handle)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = exc.name.lower().replace(" ", "_")
    response = _json_error(status, code, exc.description or exc.name)
    # Keep what the error adds (Allow on a 405), not its text/html content type.
    response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
    return response


def _json_error(status: int, code: str, message: str) -> Response:
    response = jsonify(error=code, message=message, status=status)
    response.status_code = status
    return response
