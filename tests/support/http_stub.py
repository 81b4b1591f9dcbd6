"""HTTP helpers shared by the services' unit and integration tests: a stand-in for internal on
loopback, free ports, and the services' JSON log lines.

The stand-in is a real HTTP server, so the external service's real session, pool, retry and
timeouts are exercised; it can answer slowly, with another status, or with a body that is not
JSON. The conftest.py files of both test folders import its ``stub_upstream`` fixture.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import pytest

INTERNAL_LIKE = {"service": "internal", "hostname": "stub", "container_ip": "127.0.0.1"}
# What every log line of a service starts with (c2c_http.log), before its own fields.
LOG_LINE_KEYS = ["time", "level", "logger", "message"]
REQUEST_LOGGER = "c2c_http.request"


def free_port() -> int:
    """A loopback port where nothing listens (until someone binds it)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def json_lines(text: str) -> list[dict[str, Any]]:
    """Each line of a service's log, which must all be JSON objects."""
    records = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(record, dict) for record in records), text
    return records


def request_lines(text: str) -> list[dict[str, Any]]:
    """The request lines of a service's log, each reduced to the request's own fields after
    checking the keys every line starts with."""
    fields = []
    for line in json_lines(text):
        if line["logger"] != REQUEST_LOGGER:
            continue
        keys = list(line)
        assert keys[: len(LOG_LINE_KEYS)] == LOG_LINE_KEYS, keys
        own = {key: line[key] for key in keys[len(LOG_LINE_KEYS) :]}
        assert line["level"] == "INFO"
        assert line["message"] == f"{own['method']} {own['path']} {own['status']}"
        fields.append(own)
    return fields


class StubUpstream(ThreadingHTTPServer):
    """Answers GET like internal does, after ``delay`` seconds, and records the paths asked."""

    daemon_threads = True  # a handler still sleeping must not hold up the test's teardown

    def __init__(self, delay: float, status: int, body: bytes | None) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.delay, self.status, self.body = delay, status, body
        self.paths: list[str] = []
        self.client_ports: list[int] = []  # the same port twice: one kept-alive connection
        self.release = threading.Event()  # set at teardown: ends every pending delay at once
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class _StubHandler(BaseHTTPRequestHandler):
    server: StubUpstream
    protocol_version = "HTTP/1.1"  # keep-alive, like gunicorn's gthread worker

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        self.server.client_ports.append(self.client_address[1])
        self.server.release.wait(self.server.delay)
        body = self.server.body
        if body is None:
            fields = {"status": "ok"} if self.path == "/healthz" else INTERNAL_LIKE
            body = json.dumps({**fields, "client_ip": self.client_address[0]}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output for the services' own log lines


class StartStub(Protocol):
    def __call__(
        self, delay: float = 0.0, status: int = 200, body: bytes | None = None
    ) -> StubUpstream: ...


@pytest.fixture
def stub_upstream() -> Iterator[StartStub]:
    """Start stand-ins for internal; all are stopped when the test ends, whatever happened."""
    started: list[StubUpstream] = []

    def start(delay: float = 0.0, status: int = 200, body: bytes | None = None) -> StubUpstream:
        stub = StubUpstream(delay, status, body)
        started.append(stub)
        return stub

    yield start
    for stub in started:
        stub.stop()
