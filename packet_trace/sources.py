"""Where the facts come from: host commands, the Docker API, one HTTP request.

`Sources` is the seam between the trace and the machine: it returns raw output (command text,
Docker's JSON documents) for packet_trace.parse. `LiveSources` reads the live system, in the
network namespace the trace runs in (links and addresses through netlink, never /sys, so
`nsenter --net=...` points it at a Docker engine in another namespace); tests replay captures.

A multi-host stack has one `HostSources` per engine: its Docker API at the host's URL and its
host commands in the network namespace of the engine (found through its unix socket's peer), plus
what the overlay needs: a network by name, the engine's netns directory, commands in an overlay's
namespace.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

COMMAND_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 10.0
# Every Docker object of a stack carries the first two; each container also c2c.service.
PROJECT_LABEL = "c2c.project=c2c"
STACK_LABEL = "c2c.stack"
SERVICE_LABEL = "c2c.service"
# "sandbox": the container that owns a service's network namespace; "app": one inside it.
ROLE_LABEL = "c2c.role"


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
    def container_top(self, container: str) -> dict[str, Any] | None: ...
    def in_netns(self, netns_file: str, argv: list[str]) -> CommandResult: ...
    def ip_addr(self) -> CommandResult: ...
    def ss(self) -> CommandResult: ...
    def iptables_version(self) -> CommandResult: ...
    def nat_table(self) -> CommandResult: ...
    def nft_nat(self) -> CommandResult: ...
    def http_get(self, ip: str, port: int) -> HttpResult: ...


class HostSources(Sources, Protocol):
    """One engine of a multi-host stack and the namespace it runs in."""

    def network(self, name: str) -> dict[str, Any] | None: ...
    def netns_files(self, directory: str) -> list[str] | None: ...
    def command(self, argv: list[str]) -> CommandResult: ...


def nsenter(netns_file: str, argv: list[str]) -> list[str]:
    """argv run in a network namespace (nsenter joins only that; `ip netns exec` would remount
    /sys too)."""
    return ["nsenter", f"--net={netns_file}", "--", *argv]


def run(argv: list[str], netns: str | None = None) -> CommandResult:
    """Run a command (in `netns`, a namespace file, if given), never raising: a missing binary is
    returncode 127, like a shell. The result names argv as given, without the nsenter."""
    try:
        proc = subprocess.run(
            nsenter(netns, argv) if netns else argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        return CommandResult(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return CommandResult(argv, 124, "", f"{argv[0]}: timed out after {COMMAND_TIMEOUT_S}s")
    return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)


def _labels(stack: str | None) -> list[str]:
    return [PROJECT_LABEL] + ([f"{STACK_LABEL}={stack}"] if stack else [])


class LiveSources:
    """Reads the live host. Docker through its API (the `docker` SDK), lazily connected: the
    engine DOCKER_HOST names, or `docker_url`'s. Host commands run in this process's network
    namespace, or in `netns` (a namespace file) when given."""

    def __init__(self, docker_url: str | None = None, netns: str | None = None) -> None:
        self._client: Any = None
        self._docker_url = docker_url
        self._netns = netns

    # -- Docker --------------------------------------------------------------------------------

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """One call of the low-level API client; None when Docker says 'not found'."""
        import docker  # imported here so parsing and rendering work without the SDK
        import requests

        try:
            if self._client is None:
                client = (
                    docker.DockerClient(base_url=self._docker_url, timeout=10)
                    if self._docker_url
                    else docker.from_env(timeout=10)
                )
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

    def container_top(self, container: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._call("top", container)
        return found

    def network(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._call("inspect_network", name)
        return found

    # -- host: the current network namespace, or the engine's -----------------------------------

    def command(self, argv: list[str]) -> CommandResult:
        return run(argv, self._netns)

    def ip_addr(self) -> CommandResult:
        return self.command(["ip", "-j", "addr", "show"])

    def ss(self) -> CommandResult:
        return self.command(["ss", "-Hltnp"])

    def iptables_version(self) -> CommandResult:
        return self.command(["iptables", "--version"])

    def nat_table(self) -> CommandResult:
        return self.command(["iptables-save", "-t", "nat", "-c"])

    def nft_nat(self) -> CommandResult:
        return self.command(["nft", "list", "table", "ip", "nat"])

    # -- an overlay's namespace, under the engine's exec root ------------------------------------

    def netns_files(self, directory: str) -> list[str] | None:
        try:
            return sorted(os.listdir(directory))
        except OSError:
            return None

    def in_netns(self, netns_file: str, argv: list[str]) -> CommandResult:
        return run(argv, netns_file)

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


def engine_netns(url: str) -> tuple[str | None, str | None]:
    """(namespace file, name under /run/netns) of the engine serving a unix:// Docker URL: the
    network namespace of the process at the other end of its socket (SO_PEERCRED); (None, None)
    for a remote engine (tcp://, ssh://) or a socket nobody serves."""
    if not url.startswith("unix://"):
        return None, None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(url.removeprefix("unix://"))
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None, None
    finally:
        sock.close()
    pid = struct.unpack("3i", creds)[0]
    path = f"/proc/{pid}/ns/net"
    try:
        return path, _netns_name(os.stat(path))
    except OSError:
        return None, None


def is_current_netns(netns_file: str) -> bool:
    """Is this the network namespace this process runs in?"""
    try:
        theirs, ours = os.stat(netns_file), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def _netns_name(stat: os.stat_result) -> str | None:
    """The name `ip netns` knows a namespace by (its bind mount under /run/netns), if any."""
    named = Path("/run/netns")
    for entry in sorted(named.iterdir()) if named.is_dir() else []:
        try:
            found = entry.stat()
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (stat.st_dev, stat.st_ino):
            return entry.name
    return None


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
