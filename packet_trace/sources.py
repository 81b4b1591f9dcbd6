"""Where the facts come from: host commands, the Docker API, one HTTP request.

`Sources` is the seam between the trace and the machine: it returns raw output (command text,
Docker's JSON documents) for packet_trace.parse. `LiveSources` reads the live system, in the
network namespace the trace runs in (links and addresses through netlink, never /sys, so
`nsenter --net=...` points it at a Docker engine in another namespace); tests replay captures.
"""

from __future__ import annotations

import http.client
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Protocol

COMMAND_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 10.0
# Every Docker object of a stack carries the first two; each container also c2c.service.
PROJECT_LABEL = "c2c.project=c2c"
STACK_LABEL = "c2c.stack"
SERVICE_LABEL = "c2c.service"


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def command(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class HttpResult:
    status: int | None
    body: str
    ms: float
    error: str | None = None


class DockerUnavailable(RuntimeError):
    """The Docker daemon cannot be reached (not running, no permission on its socket...)."""


class DockerApiError(RuntimeError):
    """The daemon answered with an error other than 'not found'."""


class Sources(Protocol):
    def networks(self, stack: str | None) -> list[dict[str, Any]]: ...
    def containers(self, stack: str) -> list[dict[str, Any]]: ...
    def container_exec(self, container: str, argv: list[str]) -> CommandResult: ...
    def ip_addr(self) -> CommandResult: ...
    def ss(self) -> CommandResult: ...
    def iptables_version(self) -> CommandResult: ...
    def nat_table(self) -> CommandResult: ...
    def nft_nat(self) -> CommandResult: ...
    def http_get(self, ip: str, port: int) -> HttpResult: ...


def run(argv: list[str]) -> CommandResult:
    """Run a command, never raising: a missing binary is returncode 127, like a shell."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return CommandResult(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return CommandResult(argv, 124, "", f"{argv[0]}: timed out after {COMMAND_TIMEOUT_S}s")
    return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)


def _labels(stack: str | None) -> list[str]:
    return [PROJECT_LABEL] + ([f"{STACK_LABEL}={stack}"] if stack else [])


class LiveSources:
    """Reads the live host. Docker through its API (the `docker` SDK), lazily connected."""

    def __init__(self) -> None:
        self._client: Any = None

    # -- Docker --------------------------------------------------------------------------------

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """One call of the low-level API client; None when Docker says 'not found'."""
        import docker  # imported here so parsing and rendering work without the SDK
        import requests

        try:
            if self._client is None:
                client = docker.from_env(timeout=10)
                client.ping()
                self._client = client
            return getattr(self._client.api, name)(*args, **kwargs)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise DockerApiError(str(exc)) from exc
        # No daemon, no permission on its socket, or the connection dropped mid-way.
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise DockerUnavailable(str(exc)) from exc

    def networks(self, stack: str | None) -> list[dict[str, Any]]:
        found = self._call("networks", filters={"label": _labels(stack)}) or []
        # The list endpoint leaves Containers empty: inspect each network for its endpoints.
        return [n for n in (self._call("inspect_network", f["Id"]) for f in found) if n]

    def containers(self, stack: str) -> list[dict[str, Any]]:
        found = self._call("containers", all=True, filters={"label": _labels(stack)}) or []
        return [c for c in (self._call("inspect_container", f["Id"]) for f in found) if c]

    def container_exec(self, container: str, argv: list[str]) -> CommandResult:
        created = self._call("exec_create", container, argv)
        if created is None:
            return CommandResult(argv, 125, "", f"no container {container}")
        out: bytes = self._call("exec_start", created["Id"]) or b""
        code = (self._call("exec_inspect", created["Id"]) or {}).get("ExitCode")
        return CommandResult(
            argv, code if isinstance(code, int) else 1, out.decode(errors="replace"), ""
        )

    # -- host: the current network namespace ----------------------------------------------------

    def ip_addr(self) -> CommandResult:
        return run(["ip", "-j", "addr", "show"])

    def ss(self) -> CommandResult:
        return run(["ss", "-Hltnp"])

    def iptables_version(self) -> CommandResult:
        return run(["iptables", "--version"])

    def nat_table(self) -> CommandResult:
        return run(["iptables-save", "-t", "nat", "-c"])

    def nft_nat(self) -> CommandResult:
        return run(["nft", "list", "table", "ip", "nat"])

    # -- the one request -----------------------------------------------------------------------

    def http_get(self, ip: str, port: int) -> HttpResult:
        started = time.perf_counter()
        conn = http.client.HTTPConnection(ip, port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            return HttpResult(resp.status, body, _ms_since(started))
        except OSError as exc:
            return HttpResult(None, "", _ms_since(started), f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
