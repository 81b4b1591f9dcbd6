"""The two services as real gunicorn processes, external -> internal over real HTTP on loopback
(issue 2's service tests and issue 5's faults at process level)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests

from tests.integration.conftest import Service, StartService
from tests.support.http_stub import LOG_LINE_KEYS, StartStub, json_lines, request_lines


def call(url: str, method: str = "GET", **kwargs: Any) -> requests.Response:
    """One plain request from a test client: no retries, no proxies from the environment."""
    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, url, timeout=10, **kwargs)


def test_chained_answer(external: Service, internal: Service) -> None:
    response = call(f"{external.url}/", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200
    body = response.json()
    assert body["service"] == "external"
    assert body["hostname"] == socket.gethostname()
    # Both ends of each hop, as each process saw them on its TCP connection.
    assert body["container_ip"] == body["client_ip"] == "127.0.0.1"
    upstream = body["upstream"]
    assert upstream == {
        "service": "internal",
        "hostname": socket.gethostname(),
        "container_ip": "127.0.0.1",
        "client_ip": "127.0.0.1",  # external's address, not the forged X-Forwarded-For
    }
    assert 0 < body["upstream_ms"] < 1000


def test_readyz_while_internal_is_up_and_down(external: Service, internal: Service) -> None:
    assert call(f"{external.url}/readyz").status_code == 200
    internal.stop()
    response = call(f"{external.url}/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert call(f"{external.url}/healthz").status_code == 200  # liveness has no dependency


def test_internal_stopped_is_a_502_in_under_a_second(external: Service, internal: Service) -> None:
    assert call(f"{external.url}/").status_code == 200  # a pooled connection now exists
    internal.stop()
    for _ in range(2):  # the stale pooled connection, then a fresh refused one
        started = time.perf_counter()
        response = call(f"{external.url}/")
        elapsed = time.perf_counter() - started
        assert response.status_code == 502
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == "upstream_unreachable"
        assert elapsed < 1.0
    # The operator's line about it, from the app's logger, in the same JSON stream.
    warnings = [r for r in json_lines(external.log()) if r["level"] == "WARNING"]
    assert any(
        r["logger"] == "external_service.app" and r["message"].startswith("upstream_unreachable")
        for r in warnings
    )


def test_slow_internal_is_a_504_within_the_read_timeout(
    start_service: StartService, stub_upstream: StartStub
) -> None:
    slow = stub_upstream(delay=10.0)  # accepts at once, answers far too late
    external = start_service("external", INTERNAL_URL=slow.url, UPSTREAM_READ_TIMEOUT="1.0")
    started = time.perf_counter()
    response = call(f"{external.url}/")
    elapsed = time.perf_counter() - started
    assert response.status_code == 504
    assert response.json() == {
        "error": "upstream_timeout",
        "message": "internal did not answer within 1.0 s",
        "status": 504,
    }
    assert 1.0 <= elapsed < 1.7
    assert slow.paths == ["/"]  # not retried


def test_restart_of_internal_is_bridged_by_the_retry(start_service: StartService) -> None:
    internal = start_service("internal")
    # Ten retries with the default 0.1 s backoff (each sleep capped at 0.5 s) keep trying for
    # about 4 s: room for a slow restart on a busy machine.
    external = start_service("external", INTERNAL_URL=internal.url, UPSTREAM_RETRIES="10")
    assert call(f"{external.url}/").status_code == 200
    internal.stop()

    result: dict[str, Any] = {}

    def in_flight() -> None:
        started = time.perf_counter()
        result["response"] = call(f"{external.url}/")
        result["elapsed"] = time.perf_counter() - started

    client = threading.Thread(target=in_flight)
    client.start()
    time.sleep(0.3)  # internal is down while the request is in flight
    internal.start()
    client.join(timeout=10)
    response: requests.Response = result["response"]
    assert response.status_code == 200, response.text
    assert response.json()["upstream"]["service"] == "internal"
    assert 0.3 <= result["elapsed"] < 5.0  # it was in flight while internal was down


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/missing", 404, "not_found"),
        ("POST", "/", 405, "method_not_allowed"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_are_json_on_both(
    external: Service, internal: Service, method: str, path: str, status: int, error: str
) -> None:
    for service in (internal, external):
        response = call(f"{service.url}{path}", method)
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == error
        if status == 405:
            assert "GET" in response.headers["Allow"]


def test_one_structured_log_line_per_request(external: Service, internal: Service) -> None:
    call(f"{external.url}/")
    call(f"{external.url}/missing")
    time.sleep(0.2)  # the lines are flushed per request; give the file a moment
    # One line per request (gunicorn's access log stays off), and it is the app's.
    about_missing = [r for r in json_lines(external.log()) if "/missing" in r["message"]]
    assert [r["logger"] for r in about_missing] == ["c2c_http.request"]
    records = request_lines(external.log())
    keys = {"service", "method", "path", "status", "ms", "upstream_ms", "remote"}
    assert all(set(record) == keys for record in records)
    # /healthz lines come from the readiness polling of the fixture.
    relevant = [(r["method"], r["path"], r["status"]) for r in records if r["path"] != "/healthz"]
    assert relevant == [("GET", "/", 200), ("GET", "/missing", 404)]
    assert all(r["remote"] == "127.0.0.1" and r["ms"] >= 0 for r in records)

    internal_records = request_lines(internal.log())
    assert [r["path"] for r in internal_records if r["path"] != "/healthz"] == ["/"]
    assert all(r["service"] == "internal" for r in internal_records)


def test_gunicorn_s_own_lines_are_json_on_the_same_stream(
    external: Service, internal: Service
) -> None:
    for service in (internal, external):
        records = json_lines(service.log())
        assert all(list(record)[: len(LOG_LINE_KEYS)] == LOG_LINE_KEYS for record in records)
        gunicorn = [r["message"] for r in records if r["logger"] == "gunicorn.error"]
        assert any(message.startswith("Booting worker") for message in gunicorn), gunicorn
        assert service.stderr.read_text() == ""  # one stream


def _probe(service: Service) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, in the service's environment."""
    return subprocess.run(
        [sys.executable, "-m", "c2c_http.probe"],
        env=service.env_of_the_image,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_the_health_probe_follows_the_server(internal: Service) -> None:
    assert _probe(internal).returncode == 0
    internal.stop()
    stopped = _probe(internal)
    assert stopped.returncode == 1
    assert stopped.stderr.startswith(f"probe: 127.0.0.1:{internal.port}: ")
