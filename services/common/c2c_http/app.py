"""The Flask app both services start from."""

from __future__ import annotations

from flask import Flask

from c2c_http.errors import DescribeError, json_only_routing, register_json_errors
from c2c_http.instance import register_instance_header
from c2c_http.log import LogExtra, register_request_log


def json_app(
    import_name: str,
    *,
    service: str,
    describe_error: DescribeError | None = None,
    log_extra: LogExtra | None = None,
) -> Flask:
    """An app that answers only JSON, names the container and worker that answered (a header,
    c2c_http.instance) and logs one JSON line per request, still without routes: the service
    registers its own afterwards (the routing settings must come first)."""
    app = Flask(import_name)
    json_only_routing(app)
    register_json_errors(app, describe_error)
    register_request_log(app, service, log_extra)
    register_instance_header(app)
    return app
