"""c2c_http, the code both services share, on its own: its extension points and edge cases.

The services' own tests cover what they build with it (test_internal_app, test_external_app).
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
from flask import Flask, g

from c2c_http.app import json_app
from c2c_http.errors import ErrorAnswer
from c2c_http.settings import Port, ServerSettings, SettingsError, integer, seconds
from tests.unit.services.conftest import RequestLog


class ExpectedFailure(Exception):
    pass


def _describe(exc: Exception) -> ErrorAnswer | None:
    return (
        (502, "dependency_down", "a dependency failed")
        if isinstance(exc, ExpectedFailure)
        else None
    )


@pytest.fixture
def app() -> Flask:
    app = json_app(
        __name__,
        service="demo",
        describe_error=_describe,
        log_extra=lambda: {"extra_ms": g.get("extra_ms")},
    )

    @app.get("/expected")
    def expected() -> str:
        raise ExpectedFailure

    @app.get("/bug")
    def bug() -> str:
        raise KeyError("secret-detail")

    @app.get("/ok")
    def ok() -> dict[str, str]:
        g.extra_ms = 1.5
        return {"status": "ok"}

    return app


def test_described_errors_get_the_service_answer(app: Flask) -> None:
    response = app.test_client().get("/expected")
    assert (response.status_code, response.content_type) == (502, "application/json")
    assert response.json == {
        "error": "dependency_down",
        "message": "a dependency failed",
        "status": 502,
    }


def test_undescribed_errors_are_a_json_500_with_details_only_in_the_log(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    response = app.test_client().get("/bug")
    assert response.status_code == 500
    assert response.json is not None
    assert (response.json["error"], response.json["status"]) == ("internal_server_error", 500)
    assert "secret-detail" not in response.get_data(as_text=True)
    assert "secret-detail" in caplog.text


def test_routing_never_redirects_nor_answers_options(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/ok/").status_code == 200  # no redirect to /ok
    for path in ("//ok", "/ok//", ""):
        response = client.get("/", environ_overrides={"PATH_INFO": path})
        assert response.status_code in (200, 404), path
        assert response.content_type == "application/json"
        assert "Location" not in response.headers
    response = client.options("/ok")
    assert (response.status_code, response.content_type) == (405, "application/json")
    assert response.headers["Allow"]  # what the 405 adds is kept


def test_log_line_has_the_extra_fields_before_the_remote(
    app: Flask, request_log: RequestLog
) -> None:
    client = app.test_client()
    client.get("/ok", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    client.get("/missing")
    first, second = request_log()
    assert list(first) == ["service", "method", "path", "status", "ms", "extra_ms", "remote"]
    assert (first["service"], first["status"], first["extra_ms"]) == ("demo", 200, 1.5)
    assert first["remote"] == "10.0.0.9"
    assert (second["status"], second["extra_ms"]) == (404, None)  # g is per request


def test_without_extras_the_line_has_only_the_common_fields(request_log: RequestLog) -> None:
    plain = json_app(__name__, service="plain")
    plain.test_client().get("/")
    (line,) = request_log()
    assert list(line) == ["service", "method", "path", "status", "ms", "remote"]


# --- settings ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Bounded(ServerSettings):
    """One field of each kind, with the bounds they are tried with: integers 0..99, seconds
    0.05..10, both defaulting to 7."""

    port: Port = 9999
    count: Annotated[int, integer("V_INT", 0, 99)] = 7
    wait: Annotated[float, seconds("V_SECONDS", 0.05, 10.0)] = 7


VARIABLES = {"int": ("V_INT", "count"), "seconds": ("V_SECONDS", "wait")}


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("int", " 12 ", 12),  # blanks around are stripped
        ("int", "  ", 7),  # blank is unset: the default
        ("int", None, 7),
        ("seconds", "0.25", 0.25),
        ("seconds", "10", 10.0),
        ("seconds", None, 7),
    ],
)
def test_accepted_values_and_defaults(kind: str, raw: str | None, expected: float) -> None:
    name, field = VARIABLES[kind]
    env = {} if raw is None else {name: raw}
    assert getattr(_Bounded.from_env(env), field) == expected


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        *(("int", raw) for raw in ["+8", "1_000", "٣", "0x10", "8.0", "-1", "1e3", "100"]),
        *(("seconds", raw) for raw in ["nan", "inf", "-inf", "3s", "0.01", "11"]),
    ],
)
def test_refused_values_name_the_variable_and_the_range(kind: str, raw: str) -> None:
    name, _ = VARIABLES[kind]
    low, high = (0, 99) if kind == "int" else (0.05, 10.0)
    what = "an integer" if kind == "int" else "a number of seconds"
    message = f"{name}={raw!r}: expected {what} from {low} to {high}"
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        _Bounded.from_env({name: raw})


def test_every_refused_variable_is_reported_at_once_one_line_each() -> None:
    env = {"V_INT": "-1", "PORT": "0", "V_SECONDS": "nan", "WEB_CONCURRENCY": "2"}
    with pytest.raises(SettingsError) as caught:
        _Bounded.from_env(env)
    # In the order of the fields; the valid WEB_CONCURRENCY is not among them.
    assert caught.value.problems == [
        "PORT='0': expected an integer from 1 to 65535",
        "V_INT='-1': expected an integer from 0 to 99",
        "V_SECONDS='nan': expected a number of seconds from 0.05 to 10.0",
    ]
    assert str(caught.value).splitlines() == caught.value.problems


@dataclass(frozen=True, kw_only=True)
class _Defaulted(ServerSettings):
    port: Port = 9999


@dataclass(frozen=True, kw_only=True)
class _NoPortDefault(ServerSettings):
    pass


@dataclass(frozen=True, kw_only=True)
class _PlainField(ServerSettings):
    port: Port = 9999
    count: int = 3  # no Env in its type: it would never be read


def test_server_settings_take_the_subclass_defaults() -> None:
    assert _Defaulted.from_env({}) == _Defaulted(port=9999, workers=2, threads=4)
    env = {"PORT": "81", "WEB_CONCURRENCY": "32", "GUNICORN_THREADS": "64"}
    assert _Defaulted.from_env(env) == _Defaulted(port=81, workers=32, threads=64)


def test_a_service_settings_without_a_default_port_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match=r"_NoPortDefault.port needs a default"):
        _NoPortDefault.from_env({})


def test_a_field_without_its_variable_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match=r"_PlainField.count names no environment variable"):
        _PlainField.from_env({})


def test_gunicorn_config_refuses_settings_that_are_no_server_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "odd_service"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text("class Settings:\n    port = 8080\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("C2C_SERVICE", "odd_service")
    monkeypatch.delitem(sys.modules, "c2c_http.gunicorn_conf", raising=False)
    with pytest.raises(SystemExit, match=r"^c2c_http: odd_service.settings.Settings is not a"):
        importlib.import_module("c2c_http.gunicorn_conf")
