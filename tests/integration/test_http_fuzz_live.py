"""Property-based HTTP fuzzing over real HTTP against both services under gunicorn (issue 5):
every well-formed request, whatever its method, path, query, headers and body, gets a
documented status as JSON without a traceback, and both servers keep answering afterwards.

Only well-formed HTTP is sent: malformed framing is rejected by gunicorn's parser before the
app runs (with gunicorn's own small HTML 400 page), which is outside the app's reach.
"""

from __future__ import annotations

import http.client
import json
import string
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import Service
from tests.support.http_stub import free_port, json_lines

DOCUMENTED = {
    "internal": {200, 404, 405},
    "external": {200, 404, 405, 502, 503, 504},
}
HEADERS_LEFT_TO_THE_CLIENT = {"host", "content-length", "transfer-encoding"}

methods = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]),
    st.text(string.ascii_uppercase, min_size=3, max_size=12).filter(lambda m: m != "CONNECT"),
)
targets = st.tuples(
    st.one_of(
        st.sampled_from(["", "healthz", "readyz", "healthz/", "/", "%2e%2e/healthz", "%zz"]),
        st.binary(max_size=30).map(lambda b: quote(b, safe="/%")),
    ),
    st.binary(max_size=30).map(lambda b: quote(b, safe="=&%")),
).map(lambda pq: f"/{pq[0]}" + (f"?{pq[1]}" if pq[1] else ""))
headers = st.dictionaries(
    st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20).filter(
        lambda name: name.lower() not in HEADERS_LEFT_TO_THE_CLIENT
    ),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
    max_size=5,
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    logs: Path = tmp_path_factory.mktemp("fuzz-logs")
    internal = Service("internal", free_port(), {}, logs)
    external = Service("external", free_port(), {"INTERNAL_URL": internal.url}, logs)
    try:
        internal.start()
        external.start()
        yield {"internal": internal, "external": external}
    finally:
        external.stop()
        internal.stop()


@pytest.mark.parametrize("name", ["internal", "external"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=methods, target=targets, headers=headers, body=st.binary(max_size=256))
def test_any_wellformed_request_gets_a_documented_json_answer(
    live: dict[str, Service],
    name: str,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", live[name].port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    event(f"{name} {response.status}")
    assert response.status in DOCUMENTED[name], text
    assert response.getheader("Content-Type") == "application/json"
    assert "Traceback" not in text
    if method != "HEAD":
        answer = json.loads(text)
        if response.status >= 400:
            assert set(answer) == {"error", "message", "status"}
            assert answer["status"] == response.status


@pytest.mark.parametrize("name", ["internal", "external"])
def test_both_still_answer_after_the_fuzzing(live: dict[str, Service], name: str) -> None:
    service = live[name]
    assert service.process is not None
    assert service.process.poll() is None  # the master never died
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    # No worker crashed or logged an unhandled error; every line is JSON, on stdout alone.
    assert "Traceback" not in service.log()
    assert {record["level"] for record in json_lines(service.log())} <= {"INFO", "WARNING"}
    assert service.stderr.read_text() == ""
