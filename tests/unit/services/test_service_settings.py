"""Both services' settings: bounded defaults, and one clear line naming each bad variable."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest
from gunicorn.config import Config as GunicornConfig  # type: ignore[import-untyped]
from gunicorn.glogging import Logger as GunicornLogger  # type: ignore[import-untyped]

import external_service.settings as ext
import internal_service.settings as int_
from c2c_http.log import NoAccessLogger
from c2c_http.settings import SettingsError

URL = {"INTERNAL_URL": "http://172.13.0.2:8080"}


def test_internal_defaults_and_overrides() -> None:
    assert int_.Settings.from_env({}) == int_.Settings(port=8080, workers=2, threads=4)
    env = {"PORT": "9000", "WEB_CONCURRENCY": " 3 ", "GUNICORN_THREADS": "8"}
    assert int_.Settings.from_env(env) == int_.Settings(port=9000, workers=3, threads=8)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "80a"),
        ("PORT", "-1"),
        ("PORT", "8080.0"),
        ("WEB_CONCURRENCY", "0"),
        ("GUNICORN_THREADS", "1000"),
    ],
)
def test_internal_rejects_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}="):
        int_.Settings.from_env({name: value})


def test_external_defaults() -> None:
    settings = ext.Settings.from_env(URL)
    assert settings == ext.Settings(
        internal_url="http://172.13.0.2:8080",
        port=8081,
        connect_timeout=0.2,
        read_timeout=3.0,
        retries=2,
        backoff=0.1,
        workers=2,
        threads=4,
    )


def test_external_overrides_and_trailing_slash() -> None:
    env = {
        "INTERNAL_URL": "https://internal.example:8443/base/",
        "UPSTREAM_CONNECT_TIMEOUT": "0.25",
        "UPSTREAM_READ_TIMEOUT": "60",
        "UPSTREAM_RETRIES": "0",
        "UPSTREAM_BACKOFF": "0",
    }
    settings = ext.Settings.from_env(env)
    assert settings.internal_url == "https://internal.example:8443/base"
    assert (settings.connect_timeout, settings.read_timeout) == (0.25, 60.0)
    assert (settings.retries, settings.backoff) == (0, 0.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INTERNAL_URL", ""),
        ("INTERNAL_URL", "172.13.0.2:8080"),
        ("INTERNAL_URL", "ftp://172.13.0.2"),
        ("INTERNAL_URL", "http://"),
        ("INTERNAL_URL", "http://host:99999"),
        ("INTERNAL_URL", "http://host:0"),
        ("INTERNAL_URL", "http://host:port"),
        ("INTERNAL_URL", "http://host/?q=1"),
        ("UPSTREAM_CONNECT_TIMEOUT", "0.01"),
        ("UPSTREAM_CONNECT_TIMEOUT", "11"),
        ("UPSTREAM_READ_TIMEOUT", "nan"),
        ("UPSTREAM_READ_TIMEOUT", "inf"),
        ("UPSTREAM_READ_TIMEOUT", "3s"),
        ("UPSTREAM_RETRIES", "11"),
        ("UPSTREAM_RETRIES", "1.5"),
        ("UPSTREAM_BACKOFF", "-0.1"),
        ("PORT", "70000"),
        ("WEB_CONCURRENCY", "0"),
    ],
)
def test_external_rejects_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}"):
        ext.Settings.from_env({**URL, name: value})


def test_missing_internal_url_is_named() -> None:
    with pytest.raises(SettingsError, match=r"^INTERNAL_URL is required"):
        ext.Settings.from_env({})


def test_external_reports_every_bad_variable_at_once() -> None:
    env = {"UPSTREAM_RETRIES": "11", "PORT": "http", "UPSTREAM_BACKOFF": "0.5"}
    with pytest.raises(SettingsError) as caught:
        ext.Settings.from_env(env)
    assert caught.value.problems == [
        "PORT='http': expected an integer from 1 to 65535",
        "INTERNAL_URL is required, e.g. http://172.13.0.2:8080",
        "UPSTREAM_RETRIES='11': expected an integer from 0 to 10",
    ]


def _fresh_import(name: str) -> ModuleType:
    sys.modules.pop(name, None)  # the config module reads the environment at import
    return importlib.import_module(name)


@pytest.mark.parametrize("service", ["internal_service", "external_service"])
def test_gunicorn_config_follows_the_environment(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C2C_SERVICE", service)  # what the image sets
    monkeypatch.setenv("INTERNAL_URL", URL["INTERNAL_URL"])
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "5")
    conf = _fresh_import("c2c_http.gunicorn_conf")
    assert conf.bind == ["0.0.0.0:8123"]
    assert (conf.workers, conf.threads) == (3, 5)
    assert conf.worker_tmp_dir == "/dev/shm"  # the root filesystem is read-only
    assert conf.accesslog is None  # the app writes the one access line itself
    assert conf.logger_class is NoAccessLogger
    assert conf.wsgi_app == f"{service}.app:create_app()"
    assert conf.logconfig_dict["root"]["handlers"] == ["stdout"]  # one JSON stream


def test_the_gunicorn_logger_formats_no_access_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a logconfig_dict, gunicorn's own Logger takes the access log as on and formats its
    # fields for each request; ours never looks at the request at all.
    cfg = GunicornConfig()
    cfg.set("logconfig_dict", {"version": 1})
    logger = NoAccessLogger(cfg)
    assert GunicornLogger(cfg).access_log_enabled  # the cost this logger avoids

    def fail(*_: object) -> None:
        raise AssertionError("access fields were formatted")

    monkeypatch.setattr(logger, "atoms", fail)
    logger.access(object(), object(), {}, 0.001)


@pytest.mark.parametrize(
    ("service", "port"), [("internal_service", 8080), ("external_service", 8081)]
)
def test_gunicorn_config_binds_the_service_default_port(
    service: str, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C2C_SERVICE", service)
    monkeypatch.setenv("INTERNAL_URL", URL["INTERNAL_URL"])
    monkeypatch.delenv("PORT", raising=False)
    assert _fresh_import("c2c_http.gunicorn_conf").bind == [f"0.0.0.0:{port}"]


@pytest.mark.parametrize("service", ["internal_service", "external_service"])
def test_gunicorn_config_stops_with_one_line_naming_the_variable(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C2C_SERVICE", service)
    monkeypatch.setenv("INTERNAL_URL", URL["INTERNAL_URL"])
    monkeypatch.setenv("PORT", "http")
    with pytest.raises(SystemExit, match=f"^{service}: invalid setting: PORT='http'"):
        _fresh_import("c2c_http.gunicorn_conf")


def test_gunicorn_config_checks_the_service_settings_not_only_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("C2C_SERVICE", "external_service")
    monkeypatch.delenv("INTERNAL_URL", raising=False)
    with pytest.raises(SystemExit, match=r"^external_service: invalid setting: INTERNAL_URL is"):
        _fresh_import("c2c_http.gunicorn_conf")


def test_gunicorn_config_stops_with_one_line_per_bad_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("C2C_SERVICE", "external_service")
    monkeypatch.setenv("INTERNAL_URL", "ftp://x")
    monkeypatch.setenv("GUNICORN_THREADS", "0")
    with pytest.raises(SystemExit) as caught:
        _fresh_import("c2c_http.gunicorn_conf")
    assert str(caught.value.code).splitlines() == [
        "external_service: invalid setting: GUNICORN_THREADS='0': expected an integer from 1 to 64",
        "external_service: invalid setting: INTERNAL_URL='ftp://x': "
        "expected http(s)://host[:port][/path]",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, r"^c2c_http: C2C_SERVICE='': expected a service package name$"),
        ("internal_service:create_app()", r"^c2c_http: C2C_SERVICE='internal_service:"),
        ("no_such_service", r"^c2c_http: C2C_SERVICE='no_such_service': No module named"),
        ("c2c_http", r"^c2c_http: C2C_SERVICE='c2c_http': .*no attribute 'Settings'"),
        ("email", r"^c2c_http: C2C_SERVICE='email': No module named 'email.settings'"),
    ],
)
def test_gunicorn_config_stops_with_one_line_on_a_bad_service_name(
    value: str | None, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("C2C_SERVICE", raising=False)
    else:
        monkeypatch.setenv("C2C_SERVICE", value)
    with pytest.raises(SystemExit, match=message):
        _fresh_import("c2c_http.gunicorn_conf")
