"""One Docker engine per lab host: its command line, start, readiness, stop, and the docker CLI
pointed at it."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab import system
from lab.naming import LabError, LabNames
from lab.netns import nsenter_argv

# `sh -c` script that names the new UTS namespace after the lab host, then becomes dockerd:
# each engine (and its Swarm node) then reports its own hostname.
_SET_HOSTNAME = 'hostname "$1" && shift && exec "$@"'


@dataclass(frozen=True)
class EngineSpec:
    """Which dockerd to run and how. `path` directories come first on dockerd's PATH, so a
    newer runc, docker-proxy or containerd placed there is used instead of the system's."""

    dockerd: str = "dockerd"
    path: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    start_timeout: float = 60.0
    stop_timeout: float = 20.0
    env: dict[str, str] = field(default_factory=dict)


def dockerd_argv(names: LabNames, host: str, spec: EngineSpec) -> list[str]:
    """nsenter (network namespace) -> unshare (own UTS namespace) -> hostname -> dockerd."""
    daemon = [
        spec.dockerd,
        "--host",
        names.docker_host(host),
        "--data-root",
        str(names.data_root(host)),
        "--exec-root",
        str(names.exec_root(host)),
        "--pidfile",
        str(names.pidfile(host)),
        # cgroup v1 here and no systemd: cgroupfs, with a parent of this engine's own.
        "--exec-opt",
        "native.cgroupdriver=cgroupfs",
        "--cgroup-parent",
        names.cgroup_parent(host),
        "--label",
        names.label,
        "--label",
        f"c2c.lab.host={host}",
        *spec.extra_args,
    ]
    return nsenter_argv(
        names.netns_path(host),
        ["unshare", "--uts", "--", "sh", "-c", _SET_HOSTNAME, "c2c-lab", host, *daemon],
    )


def dockerd_env(spec: EngineSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    # No registry is reachable from a lab: a Swarm node runs the image it has (every host builds
    # its own) instead of trying a pull first (read by Debian's 20.10 and by moby v2).
    env["DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"] = "1"
    env.update(spec.env)
    env["PATH"] = system.tool_path(spec.path)
    return env


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def answers(sock: Path, timeout: float = 2.0) -> bool:
    """True if an engine answers GET /_ping with OK on the unix socket `sock`."""
    if not sock.exists():
        return False
    conn = _UnixHTTPConnection(sock, timeout)
    try:
        conn.request("GET", "/_ping")
        response = conn.getresponse()
        return response.status == 200 and response.read() == b"OK"
    except OSError:
        return False
    finally:
        conn.close()


def running_pid(names: LabNames, host: str) -> int | None:
    """The pid of this host's dockerd if its pidfile names a live dockerd, else None."""
    pid = system.pid_from_file(names.pidfile(host))
    if pid is not None and system.is_running(pid) and system.process_name(pid) == "dockerd":
        return pid
    return None


def start(names: LabNames, host: str, spec: EngineSpec) -> int:
    """Start dockerd in the background (own session, log to its file); returns its pid. The
    nsenter/unshare/sh chain execs, so the pid is dockerd's."""
    for directory in (names.host_run_dir(host), names.data_root(host)):
        directory.mkdir(parents=True, exist_ok=True, mode=0o711)
    names.pidfile(host).unlink(missing_ok=True)  # stale: running_pid said no engine
    # A new namespace inherits this machine's ip_forward=1; a freshly booted host has 0, and
    # then Docker (20.10) enables forwarding itself and sets the FORWARD policy to DROP, which
    # is what keeps an unpublished container port from neighbours. Start as a booted host would.
    system.run(nsenter_argv(names.netns_path(host), ["sysctl", "-qw", "net.ipv4.ip_forward=0"]))
    argv = dockerd_argv(names, host, spec)
    with open(names.log_file(host), "ab") as log_file:
        log_file.write(f"--- {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
        log_file.flush()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dockerd_env(spec),
            start_new_session=True,
            close_fds=True,
        )
    return process.pid


def wait_ready(names: LabNames, host: str, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    sock = names.socket(host)
    while time.monotonic() < deadline:
        if answers(sock):
            return
        system.reap(pid)  # it is our child: if it died, let it go
        if not system.is_running(pid):
            raise LabError(f"dockerd of host {host} exited: {_log_tail(names, host)}")
        time.sleep(0.2)
    raise LabError(
        f"dockerd of host {host} did not answer on {sock} within {timeout:.0f}s: "
        f"{_log_tail(names, host)}"
    )


def _log_tail(names: LabNames, host: str, lines: int = 3) -> str:
    try:
        text = names.log_file(host).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return f"{' | '.join(text[-lines:])} (log: {names.log_file(host)})"


def kill_containers(names: LabNames, host: str) -> int:
    """Kill this engine's running containers, so its shutdown does not wait out each one's stop
    timeout. Returns how many."""
    if not answers(names.socket(host)):
        return 0
    ids = docker(names, host, ["ps", "-q"], check=False).stdout.split()
    if ids:
        docker(names, host, ["kill", *ids], check=False)
    return len(ids)


def stop(names: LabNames, hosts: Sequence[str], timeout: float) -> list[str]:
    """Stop these hosts' engines together: SIGTERM, SIGKILL after `timeout` s. Returns the
    hosts whose engine was running."""
    pids = {host: pid for host in hosts if (pid := running_pid(names, host)) is not None}
    system.signal_pids(pids.values(), signal.SIGTERM)
    left = system.wait_gone(pids.values(), timeout)
    if left:
        system.signal_pids(left, signal.SIGKILL)
        system.wait_gone(left, 10)
    return list(pids)


def docker(
    names: LabNames, host: str, args: Sequence[str], *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The docker CLI against this host's engine."""
    return system.run(
        ["docker", *args],
        env={"DOCKER_HOST": names.docker_host(host)},
        check=check,
        timeout=timeout,
    )
