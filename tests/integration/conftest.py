"""Fixtures for the integration tests: the services as real gunicorn processes on loopback.

Each process binds 127.0.0.1 on a free port (the config's 0.0.0.0 is overridden on the command
line), writes its stdout/stderr to files under the test's tmp_path (every line it logs goes to
stdout as JSON), and is always stopped at teardown, killed if it does not stop in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest
import requests

from lab.netns import nsenter_argv, run_in_netns
from tests.support.http_stub import free_port, stub_upstream

__all__ = ["stub_upstream"]  # a fixture: pytest finds it in this conftest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
GUNICORN_CONFIG = "python:c2c_http.gunicorn_conf"  # the image's CMD uses the same


@dataclass
class Service:
    """One gunicorn master (with its workers) serving internal_service or external_service."""

    name: str  # "internal" or "external"
    port: int
    env: dict[str, str]
    logs: Path
    # A named network namespace to run in (`ip netns`), None for the test's own.
    netns: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> Path:
        return self.logs / f"{self.name}.out"

    @property
    def stderr(self) -> Path:
        return self.logs / f"{self.name}.err"

    @property
    def env_of_the_image(self) -> dict[str, str]:
        """As in the image (services/Dockerfile): the shared code and the service's package on
        the path, C2C_SERVICE naming the package; PORT as set here."""
        python_path = [ROOT / "services" / "common", ROOT / "services" / self.name]
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(map(str, python_path)),
            "PYTHONUNBUFFERED": "1",
            "C2C_SERVICE": f"{self.name}_service",
            "PORT": str(self.port),
            **self.env,
        }

    def start(self) -> float:
        """Start and wait until /healthz answers; returns the seconds that took."""
        started = time.perf_counter()
        command = [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG]
        command += ["--bind", f"127.0.0.1:{self.port}"]
        if self.netns is not None:
            command = nsenter_argv(self.netns, command)
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:
            self.process = subprocess.Popen(
                command, env=self.env_of_the_image, stdout=out, stderr=err, cwd=ROOT
            )
        self._wait_healthy(started + START_TIMEOUT)
        return time.perf_counter() - started

    def _wait_healthy(self, deadline: float) -> None:
        assert self.process is not None
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                output = self.stdout.read_text(errors="replace")
                output += self.stderr.read_text(errors="replace")
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{output}")
            try:
                if self.get("/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        pytest.fail(f"{self.name} did not answer /healthz within {START_TIMEOUT} s")

    def get(self, path: str, *, timeout: float) -> requests.Response:
        """One GET on a new connection, from where the service runs (its namespace)."""

        def ask() -> requests.Response:
            return requests.get(f"{self.url}{path}", timeout=timeout)

        return ask() if self.netns is None else run_in_netns(self.netns, ask, timeout + 5)

    def stop(self) -> None:
        """Graceful stop (SIGTERM, what `docker stop` sends); SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def log(self) -> str:
        return self.stdout.read_text(errors="replace")


class StartService(Protocol):
    def __call__(self, name: str, **env: str) -> Service: ...


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Start services on free loopback ports; every one is stopped at teardown."""
    services: list[Service] = []

    def start(name: str, **env: str) -> Service:
        service = Service(name, free_port(), env, tmp_path)
        services.append(service)
        service.start()
        return service

    yield start
    for service in reversed(services):
        service.stop()


@pytest.fixture
def internal(start_service: StartService) -> Service:
    return start_service("internal")


@pytest.fixture
def external(start_service: StartService, internal: Service) -> Service:
    return start_service("external", INTERNAL_URL=internal.url)
