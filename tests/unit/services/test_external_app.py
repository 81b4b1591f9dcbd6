"""The external service through Flask's test client, calling a real stand-in for internal.

The stand-in is a real HTTP server on loopback, so the session, its pool, the retry policy and
the timeouts are the product's own, not mocks.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from external_service.app import create_app
from external_service.settings import Settings
from tests.support.http_stub import INTERNAL_LIKE, StartStub, free_port
from tests.unit.services.conftest import RequestLog


def make_client(url: str, **overrides: Any) -> FlaskClient:
    return create_app(Settings(internal_url=url, **overrides)).test_client()


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def test_root_relays_internal_answer(stub_upstream: StartStub) -> None:
    stub = stub_upstream()
    response = make_client(stub.url).get("/", environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert response.status_code == 200
    body = response.json
    assert body is not None
    assert body["service"] == "external"
    assert body["hostname"] == socket.gethostname()
    assert body["client_ip"] == "10.1.1.1"
    assert body["upstream"] == {**INTERNAL_LIKE, "client_ip": "127.0.0.1"}
    assert isinstance(body["upstream_ms"], float)
    assert body["upstream_ms"] >= 0
    assert stub.paths == ["/"]


def test_one_kept_alive_connection_serves_successive_requests(stub_upstream: StartStub) -> None:
    stub = stub_upstream()
    client = make_client(stub.url)
    for _ in range(3):
        assert client.get("/").status_code == 200
    assert len(stub.client_ports) == 3
    assert len(set(stub.client_ports)) == 1


def test_refused_is_a_fast_502_after_the_bounded_retries(closed_url: str) -> None:
    client = make_client(closed_url)  # defaults: 2 retries, backoff 0.1 s: sleeps 0, 0.2
    started = time.perf_counter()
    response = client.get("/")
    elapsed = time.perf_counter() - started
    assert response.status_code == 502
    assert response.json == {
        "error": "upstream_unreachable",
        "message": "internal refused or is unreachable",
        "status": 502,
    }
    assert 0.18 <= elapsed < 0.6  # the backoff really waited, and stayed bounded


def test_without_retries_refused_fails_at_once(closed_url: str) -> None:
    started = time.perf_counter()
    assert make_client(closed_url, retries=0).get("/").status_code == 502
    assert time.perf_counter() - started < 0.3


def test_slow_internal_is_a_504_after_one_read_timeout(stub_upstream: StartStub) -> None:
    stub = stub_upstream(delay=5.0)
    started = time.perf_counter()
    response = make_client(stub.url, read_timeout=0.3).get("/")
    elapsed = time.perf_counter() - started
    assert response.status_code == 504
    assert response.json is not None
    assert response.json["error"] == "upstream_timeout"
    assert response.json["message"] == "internal did not answer within 0.3 s"
    assert 0.3 <= elapsed < 0.8
    assert stub.paths == ["/"]  # a read timeout is never retried


@pytest.fixture
def drops_first_connection() -> Iterator[str]:
    """A server that closes its first connection without answering, then answers normally:
    what a pooled keep-alive connection looks like when internal restarted meanwhile."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)

    def serve() -> None:
        first, _ = server.accept()
        first.recv(4096)
        first.close()
        second, _ = server.accept()
        second.recv(4096)
        body = json.dumps(INTERNAL_LIKE).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        second.sendall(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
        second.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    thread.join(timeout=5)
    server.close()


def test_a_dropped_connection_is_retried(drops_first_connection: str) -> None:
    response = make_client(drops_first_connection).get("/")
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["upstream"] == INTERNAL_LIKE


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, None), (200, b"<html>not json</html>"), (200, b"[1, 2]"), (302, b"")],
)
def test_unusable_answer_is_a_502(
    stub_upstream: StartStub, status: int, body: bytes | None
) -> None:
    stub = stub_upstream(status=status, body=body)
    response = make_client(stub.url).get("/")
    assert response.status_code == 502
    assert response.json is not None
    assert response.json["error"] == "upstream_invalid"
    assert stub.paths == ["/"]  # an answer, even a bad one, is not retried


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (requests.ConnectTimeout(), 502, "upstream_unreachable"),  # also a Timeout: still 502
        (requests.ConnectionError(), 502, "upstream_unreachable"),
        (requests.ReadTimeout(), 504, "upstream_timeout"),
        (requests.TooManyRedirects(), 502, "upstream_failed"),
    ],
)
def test_each_requests_error_has_its_answer(exc: Exception, status: int, code: str) -> None:
    app: Flask = create_app(Settings(internal_url="http://127.0.0.1:9"))

    @app.get("/raise")
    def raise_it() -> str:
        raise exc

    response = app.test_client().get("/raise")
    assert (response.status_code, response.content_type) == (status, "application/json")
    assert response.json is not None
    assert response.json["error"] == code


def test_readyz_follows_internal_health(stub_upstream: StartStub, closed_url: str) -> None:
    healthy = stub_upstream()
    response = make_client(healthy.url).get("/readyz")
    assert (response.status_code, response.json) == (200, {"status": "ready"})
    assert healthy.paths == ["/healthz"]

    for url in (closed_url, stub_upstream(status=500).url):
        response = make_client(url, retries=0).get("/readyz")
        assert response.status_code == 503
        assert response.json == {
            "error": "service_unavailable",
            "message": "internal does not answer its /healthz",
            "status": 503,
        }


def test_readyz_gives_up_after_the_read_timeout(stub_upstream: StartStub) -> None:
    started = time.perf_counter()
    response = make_client(stub_upstream(delay=5.0).url, read_timeout=0.2).get("/readyz")
    assert response.status_code == 503
    assert time.perf_counter() - started < 0.7


def test_healthz_does_not_depend_on_internal(closed_url: str) -> None:
    started = time.perf_counter()
    response = make_client(closed_url).get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})
    assert time.perf_counter() - started < 0.2  # internal was not even asked


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("POST", "/", 405), ("PUT", "/readyz", 405), ("OPTIONS", "/", 405)],
)
def test_routing_errors_are_json(closed_url: str, method: str, path: str, status: int) -> None:
    response = make_client(closed_url).open(path, method=method)
    assert (response.status_code, response.content_type) == (status, "application/json")
    assert response.json is not None
    assert response.json["status"] == status


def test_log_line_carries_the_time_spent_upstream(
    stub_upstream: StartStub, request_log: RequestLog
) -> None:
    client = make_client(stub_upstream().url)
    client.get("/")
    client.get("/healthz")
    lines = request_log()
    assert [(x["service"], x["path"], x["status"]) for x in lines] == [
        ("external", "/", 200),
        ("external", "/healthz", 200),
    ]
    assert 0 <= lines[0]["upstream_ms"] <= lines[0]["ms"]
    assert lines[1]["upstream_ms"] is None
