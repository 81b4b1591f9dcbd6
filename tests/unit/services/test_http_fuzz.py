"""Property-based HTTP fuzzing of both apps (issue 5, bad input): random methods, raw paths,
query strings, headers and bodies get only documented statuses, always as JSON without a
traceback, and the app keeps answering afterwards.

Raw paths and query strings are given the way gunicorn hands them to the app (bytes decoded as
latin-1 in the WSGI environ), so the client does not clean them up first.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator

import pytest
from flask import Flask
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import external_service.app
import external_service.settings
import internal_service.app
import internal_service.settings
from tests.support.http_stub import StubUpstream

# What each service documents; a 500 (a bug) or a redirect is a failure.
DOCUMENTED = {
    "internal": {200, 400, 404, 405},
    "external": {200, 400, 404, 405, 502, 503, 504},
}
KNOWN_PATHS = ["", "/", "/healthz", "/readyz", "//", "/healthz/", "/%2e%2e/", "/\xc3\xa9"]
FRAMING = {"content-length", "transfer-encoding"}  # the server's business, not the app's

methods = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]),
    st.text(string.ascii_uppercase, min_size=3, max_size=12),
)
raw_paths = st.one_of(
    st.sampled_from(KNOWN_PATHS),
    st.binary(max_size=40).map(lambda b: "/" + b.decode("latin-1")),
    st.lists(st.sampled_from(["healthz", "readyz", "..", "%00", "é", ""]), max_size=4).map(
        lambda parts: "/" + "/".join(parts)
    ),
)
header_names = st.one_of(
    st.sampled_from(["Host", "Content-Type", "Accept", "X-Forwarded-For", "Cookie", "Expect"]),
    st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20),
).filter(lambda name: name.lower() not in FRAMING)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, Flask]]:
    stub = StubUpstream(delay=0.0, status=200, body=None)  # a fast, healthy internal
    url = stub.url
    yield {
        "internal": internal_service.app.create_app(internal_service.settings.Settings()),
        "external": external_service.app.create_app(
            external_service.settings.Settings(internal_url=url)
        ),
    }
    stub.stop()


@pytest.mark.parametrize("service", ["internal", "external"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=methods,
    path=raw_paths,
    query=st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    headers=st.dictionaries(header_names, header_values, max_size=5),
    body=st.binary(max_size=256),
)
def test_any_request_gets_a_documented_json_answer(
    apps: dict[str, Flask],
    service: str,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    response = (
        apps[service]
        .test_client()
        .open(
            "/",
            method=method,
            headers=headers,
            data=body,
            environ_overrides={"PATH_INFO": path, "QUERY_STRING": query},
        )
    )
    event(f"{service} {response.status_code}")
    assert response.status_code in DOCUMENTED[service]
    assert response.content_type == "application/json"
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    if method == "HEAD":
        assert text == ""
        return
    answer = json.loads(text)
    assert isinstance(answer, dict)
    if response.status_code >= 400:
        assert set(answer) == {"error", "message", "status"}
        assert answer["status"] == response.status_code


@pytest.mark.parametrize("service", ["internal", "external"])
def test_still_answering_after_the_fuzzing(apps: dict[str, Flask], service: str) -> None:
    # Runs after the property above (same module, same app objects).
    response = apps[service].test_client().get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})
