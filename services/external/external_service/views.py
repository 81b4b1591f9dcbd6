"""The three endpoints of the external service."""

from __future__ import annotations

import socket
from typing import Any

from flask import Blueprint, abort, current_app, g, request

from external_service.upstream import Upstream

bp = Blueprint("external", __name__)


def _upstream() -> Upstream:
    upstream: Upstream = current_app.extensions["upstream"]
    return upstream


@bp.get("/")
def chained() -> dict[str, Any]:
    body, elapsed_ms = _upstream().identity()
    g.upstream_ms = round(elapsed_ms, 3)  # also goes into the request's log line
    sock = request.environ.get("gunicorn.socket")  # the accepted connection, under gunicorn
    return {
        "service": "external",
        "hostname": socket.gethostname(),
        # Our address as the client reached it: the local end of the accepted socket (exact
        # with several interfaces, no name lookup); None in the test client, which has none.
        "container_ip": sock.getsockname()[0] if isinstance(sock, socket.socket) else None,
        "client_ip": request.remote_addr,  # the TCP peer, after Docker's NAT; no X-Forwarded-For
        "upstream": body,
        "upstream_ms": g.upstream_ms,
    }


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}  # liveness only: must not depend on internal


@bp.get("/readyz")
def readyz() -> dict[str, str]:
    if not _upstream().ready():
        abort(503, "internal does not answer its /healthz")
    return {"status": "ready"}
