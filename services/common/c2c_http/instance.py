"""Which container, and which process in it, answered a request.

During a handover two containers of a service listen on one port at once (SO_REUSEPORT, see
gunicorn_conf and docs/zero-downtime.md), and the kernel picks the listener per connection: a
request to 127.0.0.1 from inside the new container may be answered by the old one. So every
answer names its answerer in the INSTANCE_HEADER, ``<container>/<pid>``: the container is a
digest of the process's PID namespace (each container has its own, and `docker exec`, which
runs the health probe, joins it), the pid the worker's within it. The probe compares the
container part with its own and counts the pids. The digest reveals nothing about the host.

Kept free of Flask imports: the probe loads this module too.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask
    from flask.wrappers import Response

INSTANCE_HEADER = "C2C-Instance"
PID_NAMESPACE = "/proc/self/ns/pid"
_ANSWERER = re.compile(r"([0-9a-f]{12})/([0-9]+)")


@functools.cache
def container_instance() -> str:
    """This process's container: 12 hex digits of a digest of its PID namespace's identity
    (e.g. ``pid:[4026532578]``), the same for every process of one container."""
    namespace = os.readlink(PID_NAMESPACE)
    return hashlib.sha256(namespace.encode()).hexdigest()[:12]


def answerer() -> str:
    """The INSTANCE_HEADER value this process sends: ``<container>/<pid>``."""
    return f"{container_instance()}/{os.getpid()}"


def parse_answerer(value: str) -> tuple[str, int] | None:
    """(container, pid) of an INSTANCE_HEADER value, None if it is not one."""
    match = _ANSWERER.fullmatch(value)
    return (match[1], int(match[2])) if match else None


def register_instance_header(app: Flask) -> None:
    """Name the answering container and worker on every response."""

    def add_header(response: Response) -> Response:
        response.headers[INSTANCE_HEADER] = answerer()
        return response

    app.after_request(add_header)
