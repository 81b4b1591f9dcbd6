"""Where the facts come from: host commands, /sys, the Docker API, one HTTP request.

`Sources` is the seam between the trace and the machine. `LiveSources` reads the live system;
tests substitute a class that replays captured fixtures.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from packet_trace.parse import ContainerLink, HostLink

COMMAND_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 10.0
PROJECT_LABEL = "c2c.project=c2c"


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
    def pulumi_outputs(self, stack: str) -> CommandResult | None: ...
    def network(self, name: str) -> dict[str, Any] | None: ...
    def networks_by_label(self, stack: str | None) -> list[dict[str, Any]]: ...
    def container(self, name: str) -> dict[str, Any] | None: ...
    def container_links(self, container: str, ifnames: list[str]) -> list[ContainerLink]: ...
    def host_links(self) -> list[HostLink]: ...
    def ss(self) -> CommandResult: ...
    def ip_addr(self) -> CommandResult: ...
    def iptables_version(self) -> CommandResult: ...
    def nat_table(self) -> CommandResult: ...
    def nft_nat(self) -> CommandResult: ...
    def http_get(self, ip: str, port: int, path: str = "/") -> HttpResult: ...


def run(argv: list[str], cwd: Path | None = None) -> CommandResult:
    """Run a command, never raising: a missing binary is returncode 127, like a shell."""
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError:
        return CommandResult(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return CommandResult(argv, 124, "", f"{argv[0]}: timed out after {COMMAND_TIMEOUT_S}s")
    return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)


def project_dir() -> Path:
    """The directory holding Pulumi.yaml: the current one or the repository of this package."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (candidate / "Pulumi.yaml").exists():
            return candidate
    return Path.cwd()


class LiveSources:
    """Reads the live host. Docker through its API (the `docker` SDK), lazily connected."""

    def __init__(self) -> None:
        self._client: Any = None

    # -- Docker --------------------------------------------------------------------------------

    def _api(self) -> Any:
        if self._client is None:
            import docker  # imported here so parsing and rendering work without the SDK

            try:
                client = docker.from_env(timeout=10)
                client.ping()
            except Exception as exc:  # the SDK raises several types for one cause: no daemon
                raise DockerUnavailable(str(exc)) from exc
            self._client = client
        return self._client.api

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import docker.errors

        try:
            return fn(*args, **kwargs)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise DockerApiError(str(exc)) from exc
        except Exception as exc:  # connection dropped mid-way: same remedy as no daemon
            raise DockerUnavailable(str(exc)) from exc

    def network(self, name: str) -> dict[str, Any] | None:
        api = self._api()
        result: dict[str, Any] | None = self._call(api.inspect_network, name)
        return result

    def networks_by_label(self, stack: str | None) -> list[dict[str, Any]]:
        api = self._api()
        labels = [PROJECT_LABEL] + ([f"c2c.stack={stack}"] if stack else [])
        found = self._call(api.networks, filters={"label": labels}) or []
        # The list endpoint leaves Containers empty: inspect each network for its endpoints.
        return [n for n in (self._call(api.inspect_network, f["Id"]) for f in found) if n]

    def container(self, name: str) -> dict[str, Any] | None:
        api = self._api()
        result: dict[str, Any] | None = self._call(api.inspect_container, name)
        return result

    def container_links(self, container: str, ifnames: list[str]) -> list[ContainerLink]:
        api = self._api()
        links = []
        for ifname in ifnames:
            # The containers are read-only with all capabilities dropped; reading /sys needs none.
            base = f"/sys/class/net/{ifname}"
            argv = ["cat", f"{base}/iflink", f"{base}/address"]
            try:
                exec_id = self._call(api.exec_create, container, argv)
                if exec_id is None:
                    continue
                out = self._call(api.exec_start, exec_id["Id"]) or b""
                code = (self._call(api.exec_inspect, exec_id["Id"]) or {}).get("ExitCode")
            except DockerApiError:
                continue  # e.g. the container is not running: no veth to report
            lines = out.decode(errors="replace").split()
            if code == 0 and len(lines) == 2 and lines[0].isdigit():
                links.append(ContainerLink(container, ifname, int(lines[0]), lines[1].lower()))
        return links

    # -- host ----------------------------------------------------------------------------------

    def host_links(self) -> list[HostLink]:
        links = []
        root = Path("/sys/class/net")
        for dev in sorted(root.iterdir()) if root.exists() else []:
            try:
                ifindex = int((dev / "ifindex").read_text().strip())
            except (OSError, ValueError):
                continue
            master = dev / "master"
            bridge = os.path.basename(os.readlink(master)) if master.exists() else None
            links.append(HostLink(dev.name, ifindex, bridge))
        return links

    def ss(self) -> CommandResult:
        return run(["ss", "-Hltnp"])

    def ip_addr(self) -> CommandResult:
        return run(["ip", "-o", "addr"])

    def iptables_version(self) -> CommandResult:
        return run(["iptables", "--version"])

    def nat_table(self) -> CommandResult:
        return run(["iptables-save", "-t", "nat", "-c"])

    def nft_nat(self) -> CommandResult:
        return run(["nft", "list", "table", "ip", "nat"])

    def pulumi_outputs(self, stack: str) -> CommandResult | None:
        if shutil.which("pulumi") is None:
            return None
        return run(["pulumi", "stack", "output", "--json", "--stack", stack], cwd=project_dir())

    # -- the one request -----------------------------------------------------------------------

    def http_get(self, ip: str, port: int, path: str = "/") -> HttpResult:
        started = time.perf_counter()
        conn = http.client.HTTPConnection(ip, port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            return HttpResult(resp.status, body, _ms_since(started))
        except OSError as exc:
            return HttpResult(None, "", _ms_since(started), f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
