"""What lets two containers of a service share its port for a handover (docs/zero-downtime.md):
every answer names its container and worker, the health probe counts only its own container's
workers, and a stopping worker lets go of its listening socket at once.

The probe is run against a loopback server that answers as scripted: as workers of the
probe's own container (the test process's PID namespace) or of another one.
"""

from __future__ import annotations

import importlib
import itertools
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import pytest
from flask import Flask

from c2c_http import probe
from c2c_http.app import json_app
from c2c_http.instance import (
    INSTANCE_HEADER,
    answerer,
    container_instance,
    parse_answerer,
)
from c2c_http.worker import HandoverWorker
from tests.support.http_stub import free_port

OTHER_CONTAINER = "0123456789ab"


def _env(port: int, workers: int = 2) -> dict[str, str]:
    return {"C2C_SERVICE": "internal_service", "PORT": str(port), "WEB_CONCURRENCY": str(workers)}


# --- every answer names its answerer ---------------------------------------------------


def test_the_answerer_is_this_container_and_this_process() -> None:
    own = container_instance()
    assert len(own) == 12
    assert int(own, 16) >= 0
    assert parse_answerer(answerer()) == (own, os.getpid())


@pytest.mark.parametrize(
    "value", ["", "0123456789ab", "0123456789ab/", "0123456789a/1", "0123456789AB/1", "x/1"]
)
def test_anything_else_is_no_answerer(value: str) -> None:
    assert parse_answerer(value) is None


def test_every_answer_carries_the_header_errors_included() -> None:
    app: Flask = json_app(__name__, service="demo")

    @app.get("/ok")
    def ok() -> dict[str, str]:
        return {"status": "ok"}

    client = app.test_client()
    for path, status in (("/ok", 200), ("/missing", 404)):
        response = client.get(path)
        assert response.status_code == status
        assert response.headers[INSTANCE_HEADER] == answerer()


# --- the probe -----------------------------------------------------------------------------


class _ScriptedServer(ThreadingHTTPServer):
    """Answers /healthz on loopback as the next of `answers`: (status, INSTANCE_HEADER value
    or None for none), round and round."""

    daemon_threads = True

    def __init__(self, answers: list[tuple[int, str | None]]) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self._answers = itertools.cycle(answers)
        self._lock = threading.Lock()
        self.asked = 0
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def next_answer(self) -> tuple[int, str | None]:
        with self._lock:
            self.asked += 1
            return next(self._answers)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: _ScriptedServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, who = self.server.next_answer()
        body = b'{"status": "ok"}'
        self.send_response(status)
        if who is not None:
            self.send_header(INSTANCE_HEADER, who)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Serve(Protocol):
    def __call__(self, *answers: tuple[int, str | None]) -> _ScriptedServer: ...


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[_ScriptedServer] = []

    def start(*answers: tuple[int, str | None]) -> _ScriptedServer:
        server = _ScriptedServer(list(answers))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def own(pid: int) -> str:
    return f"{container_instance()}/{pid}"


def other(pid: int) -> str:
    return f"{OTHER_CONTAINER}/{pid}"


def test_healthy_once_every_own_worker_answered_other_containers_ignored(serve: Serve) -> None:
    # The old container shares the port: its answers (even failing ones) do not count.
    server = serve((200, other(7)), (200, own(7)), (503, other(8)), (200, own(7)), (200, own(8)))
    assert probe.main(_env(server.port, workers=2)) == 0
    assert server.asked == 5


def test_one_worker_is_enough_when_there_is_one(serve: Serve) -> None:
    server = serve((200, own(7)))
    assert probe.main(_env(server.port, workers=1)) == 0
    assert server.asked == 1


def test_not_healthy_while_an_own_worker_never_answers(
    serve: Serve, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe, "PROBE_BUDGET", 0.3)
    server = serve((200, own(7)), (200, other(8)), (200, None))
    assert probe.main(_env(server.port, workers=2)) == 1
    err = capsys.readouterr().err
    assert err.startswith("probe: 1 of 2 workers of this container answered within 0.3 s (")
    assert server.asked > 3  # it kept asking until the budget ran out


def test_a_request_cut_short_by_the_budget_reports_the_workers_that_answered(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A listener that never answers: the probe's one request takes the whole budget.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(probe, "PROBE_BUDGET", 0.3)
        started = time.monotonic()
        assert probe.main(_env(silent.getsockname()[1], workers=2)) == 1
        assert time.monotonic() - started < 2.0
    assert capsys.readouterr().err == (
        "probe: 0 of 2 workers of this container answered within 0.3 s (0 answers from elsewhere)\n"
    )


def test_an_own_worker_that_fails_fails_the_probe(
    serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve((500, own(7)))
    assert probe.main(_env(server.port)) == 1
    assert capsys.readouterr().err == "probe: /healthz answered 500\n"


def test_nothing_listening_fails_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    closed = free_port()
    assert probe.main(_env(closed)) == 1
    assert capsys.readouterr().err.startswith(f"probe: 127.0.0.1:{closed}: ")


def test_probe_uses_the_service_default_port_without_port(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve((200, own(7)))
    package = tmp_path / "probed_service"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        "from dataclasses import dataclass\n"
        "from c2c_http.settings import Port, ServerSettings\n\n\n"
        "@dataclass(frozen=True, kw_only=True)\n"
        "class Settings(ServerSettings):\n"
        f"    port: Port = {server.port}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert probe.main({"C2C_SERVICE": "probed_service", "WEB_CONCURRENCY": "1"}) == 0
    assert server.asked == 1


def test_probe_stops_on_bad_settings_like_the_server() -> None:
    with pytest.raises(SystemExit, match=r"^internal_service: invalid setting: PORT='x'"):
        probe.main({"C2C_SERVICE": "internal_service", "PORT": "x"})


# --- gunicorn: a listener per worker, let go of at once when stopping ----------------------


def test_gunicorn_listens_per_worker_with_the_handover_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("C2C_SERVICE", "internal_service")
    monkeypatch.delitem(sys.modules, "c2c_http.gunicorn_conf", raising=False)
    gunicorn_conf = importlib.import_module("c2c_http.gunicorn_conf")
    assert gunicorn_conf.reuse_port is True
    assert gunicorn_conf.worker_class == f"{HandoverWorker.__module__}.HandoverWorker"


class _Listener:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def _worker(alive: bool) -> tuple[HandoverWorker, list[_Listener]]:
    """A HandoverWorker with just what set_accept_enabled uses: no process, no real sockets."""
    worker = HandoverWorker.__new__(HandoverWorker)
    listeners = [_Listener(), _Listener()]
    worker.sockets = listeners
    worker.alive = alive
    worker._accepting = False  # gthread's state: nothing registered, so nothing to unregister
    return worker, listeners


def test_a_stopping_worker_closes_its_listeners_at_once() -> None:
    worker, listeners = _worker(alive=False)
    worker.set_accept_enabled(False)
    assert [listener.closed for listener in listeners] == [1, 1]


def test_a_worker_at_its_connection_limit_keeps_its_listeners() -> None:
    worker, listeners = _worker(alive=True)
    worker.set_accept_enabled(False)
    assert [listener.closed for listener in listeners] == [0, 0]
