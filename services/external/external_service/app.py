"""The external service's Flask app: internal's failures answered as 502 or 504."""

from __future__ import annotations

from collections.abc import Mapping

import requests
from flask import Flask, current_app, g

from c2c_http.app import json_app
from c2c_http.errors import ErrorAnswer
from external_service import views
from external_service.settings import Settings
from external_service.upstream import Upstream, UpstreamAnswerError

# How a failed call to internal is answered, first match wins (requests' ConnectTimeout is both
# a ConnectionError and a Timeout: no answer to the connect, i.e. unreachable, 502).
UPSTREAM_ERRORS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (requests.ConnectionError, 502, "upstream_unreachable", "internal refused or is unreachable"),
    (requests.Timeout, 504, "upstream_timeout", "internal did not answer within {read} s"),
    (requests.RequestException, 502, "upstream_failed", "the call to internal failed"),
    (UpstreamAnswerError, 502, "upstream_invalid", "internal gave an unusable answer"),
)


def create_app(settings: Settings | None = None) -> Flask:
    app = json_app(
        __name__, service="external", describe_error=_upstream_error, log_extra=_upstream_time
    )
    app.config["SETTINGS"] = settings = settings or Settings.from_env()
    # One pooled keep-alive session per process: gunicorn builds the app in each worker after
    # the fork (no preload_app), so no connection is ever shared between processes.
    app.extensions["upstream"] = Upstream.from_settings(settings)
    app.register_blueprint(views.bp)
    return app


def _upstream_error(exc: Exception) -> ErrorAnswer | None:
    for exc_type, status, code, message in UPSTREAM_ERRORS:
        if isinstance(exc, exc_type):
            # One line for the operator: an expected failure of a dependency, not a bug.
            current_app.logger.warning("%s: %r", code, exc)
            return status, code, message.format(read=current_app.config["SETTINGS"].read_timeout)
    return None  # anything else is a bug: a 500


def _upstream_time() -> Mapping[str, object]:
    # The share of the request's ms spent waiting for internal (None if it was not asked).
    return {"upstream_ms": g.get("upstream_ms")}
