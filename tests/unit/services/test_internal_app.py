"""The internal service through Flask's test client: endpoints, JSON errors, the log line."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from flask import Flask, abort
from flask.testing import FlaskClient

from internal_service.app import create_app
from internal_service.settings import Settings
from tests.unit.services.conftest import RequestLog


@pytest.fixture
def app() -> Flask:
    return create_app(Settings())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def test_root_describes_the_service_and_the_peer_it_saw(client: FlaskClient) -> None:
    response = client.get(
        "/", environ_base={"REMOTE_ADDR": "10.9.8.7"}, headers={"X-Forwarded-For": "1.2.3.4"}
    )
    assert response.status_code == 200
    assert response.json == {
        "service": "internal",
        "hostname": socket.gethostname(),
        "container_ip": None,  # the test client has no accepted socket
        "client_ip": "10.9.8.7",  # the TCP peer, not the header a client can forge
    }


def test_container_ip_is_the_local_end_of_the_accepted_socket(
    client: FlaskClient, listening_socket: socket.socket
) -> None:
    # gunicorn puts the accepted connection in the environ; any bound socket stands in for it.
    response = client.get("/", environ_overrides={"gunicorn.socket": listening_socket})
    assert response.json is not None
    assert response.json["container_ip"] == "127.0.0.1"


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/missing", 404, "not_found"),
        ("GET", "/healthz/extra", 404, "not_found"),
        ("POST", "/", 405, "method_not_allowed"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
        ("OPTIONS", "/", 405, "method_not_allowed"),  # no automatic HTML-typed OPTIONS answer
    ],
)
def test_errors_are_json(
    client: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.content_type == "application/json"
    assert response.json is not None
    assert response.json["error"] == code
    assert response.json["status"] == status
    assert response.json["message"]


def test_405_keeps_the_allow_header(client: FlaskClient) -> None:
    response = client.post("/healthz")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD"}


@pytest.mark.parametrize("path_info", ["", "//healthz", "/healthz//", "/\xc3\xa9\xff"])
def test_odd_paths_never_redirect_nor_answer_html(client: FlaskClient, path_info: str) -> None:
    response = client.get("/", environ_overrides={"PATH_INFO": path_info})
    assert response.status_code in (200, 404)
    assert response.content_type == "application/json"


def test_unexpected_error_is_a_json_500_without_internals(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret-detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json is not None
    assert response.json["error"] == "internal_server_error"
    body = response.get_data(as_text=True)
    assert "secret-detail" not in body
    assert "Traceback" not in body
    assert "secret-detail" in caplog.text  # the operator still gets the details, in the log


def test_one_json_log_line_per_request(client: FlaskClient, request_log: RequestLog) -> None:
    client.get("/healthz", environ_base={"REMOTE_ADDR": "10.0.0.5"})
    client.get("/missing")
    lines = request_log()
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("GET", "/healthz", 200),
        ("GET", "/missing", 404),
    ]
    assert lines[0]["remote"] == "10.0.0.5"
    assert lines[0]["service"] == "internal"
    assert all(isinstance(x["ms"], float) and x["ms"] >= 0 for x in lines)


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "bad_request"), (413, "request_entity_too_large"), (503, "service_unavailable")],
)
def test_werkzeug_errors_raised_anywhere_are_json(app: Flask, status: int, code: str) -> None:
    @app.get("/abort")
    def abort_with() -> str:
        abort(status)

    response = app.test_client().get("/abort")
    assert (response.status_code, response.content_type) == (status, "application/json")
    assert response.json is not None
    assert (response.json["error"], response.json["status"]) == (code, status)
    assert "<" not in response.json["message"]  # Werkzeug's text, without its HTML page
