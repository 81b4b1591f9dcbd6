"""The two endpoints of the internal service."""

from __future__ import annotations

import socket

from flask import Blueprint, request

bp = Blueprint("internal", __name__)


@bp.get("/")
def whoami() -> dict[str, str | None]:
    # client_ip is the TCP peer; X-Forwarded-For is ignored on purpose: the point is to see the
    # address that really reached us (after Docker's NAT, if any).
    return {
        "service": "internal",
        "hostname": socket.gethostname(),
        "container_ip": local_ip(),
        "client_ip": request.remote_addr,
    }


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def local_ip() -> str | None:
    """The address of our interface that accepted this connection.

    gunicorn hands the accepted socket to the app in the environ; its local end is the address
    the client connected to (our IP on the Docker network). That is exact even with several
    interfaces and needs no name lookup, unlike resolving our hostname. ``None`` where the
    server does not expose it (Flask's test client).
    """
    sock = request.environ.get("gunicorn.socket")
    return str(sock.getsockname()[0]) if isinstance(sock, socket.socket) else None
