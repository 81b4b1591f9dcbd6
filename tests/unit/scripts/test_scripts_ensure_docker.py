"""scripts/ensure-docker.sh: leftover-state detection, and starting a real (isolated) dockerd."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.scripts.scripts_harness import (
    SCRIPTS,
    error_lines,
    run_script,
    source_and_run,
)


def _ok(snippet: str, **env: str) -> bool:
    return source_and_run("ensure-docker.sh", snippet, env=env).returncode == 0


def test_socket_listening_tells_live_from_leftover_sockets(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    try:
        assert _ok('socket_listening "$S"', S=str(path))
    finally:
        server.close()
    assert path.exists(), "closing must leave the file behind, as a killed daemon does"
    assert not _ok('socket_listening "$S"', S=str(path))


def test_proc_comm_treats_zombies_as_gone() -> None:
    live = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{dead.pid}/stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        result = source_and_run(
            "ensure-docker.sh",
            'echo "live=$(proc_comm "$A") dead=$(proc_comm "$B") none=$(proc_comm x)"',
            env={"A": str(live.pid), "B": str(dead.pid)},
        )
        assert result.stdout.strip() == "live=sleep dead= none="
    finally:
        live.kill()
        live.wait()
        dead.wait()


def test_clear_stale_pidfile_removes_pids_of_other_programs(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        pidfile = tmp_path / "dockerd.pid"
        pidfile.write_text(f"{other.pid}\n")
        # A reused pid: alive, but not a dockerd.
        assert _ok('clear_stale_pidfile "$F" dockerd', F=str(pidfile))
        assert not pidfile.exists()
        # The named program really runs: keep the file and report it.
        pidfile.write_text(f"{other.pid}\n")
        result = source_and_run(
            "ensure-docker.sh", 'clear_stale_pidfile "$F" sleep', env={"F": str(pidfile)}
        )
        assert result.returncode == 1
        assert result.stdout.strip() == str(other.pid)
        assert pidfile.exists()
        pidfile.write_text("garbage")
        assert _ok('clear_stale_pidfile "$F" dockerd', F=str(pidfile))
        assert not pidfile.exists()
    finally:
        other.kill()
        other.wait()


def test_dockerd_pids_for_socket_matches_host_flags(tmp_path: Path) -> None:
    # A process whose name is "dockerd" (a script's comm is its file name).
    fake = tmp_path / "dockerd"
    fake.write_text("#!/bin/bash\nsleep 30 &\ntrap 'kill $!; exit 0' TERM\nwait\n")
    fake.chmod(0o755)
    a = subprocess.Popen([str(fake), "--debug", "-H", "unix:///run/c2c-a.sock"])
    b = subprocess.Popen([str(fake), "--host=unix:///var/run/c2c-b.sock"])
    try:
        time.sleep(0.3)

        def pids(sock: str) -> set[str]:
            result = source_and_run(
                "ensure-docker.sh", 'dockerd_pids_for_socket "$S"', env={"S": sock}
            )
            assert result.returncode == 0, result.stderr
            return set(result.stdout.split())

        assert str(a.pid) in pids("/var/run/c2c-a.sock")  # /run and /var/run are one
        assert str(b.pid) not in pids("/var/run/c2c-a.sock")
        assert str(b.pid) in pids("/run/c2c-b.sock")
        assert not {str(a.pid), str(b.pid)} & pids("/var/run/docker.sock")
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(timeout=10)


def test_unreachable_remote_engine_is_a_one_line_error() -> None:
    result = run_script("ensure-docker.sh", env={"DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert result.returncode == 1
    assert error_lines(result.stderr, "ensure-docker.sh") == [
        "ensure-docker: error: DOCKER_HOST=tcp://127.0.0.1:9 does not answer; "
        "start that engine or unset DOCKER_HOST"
    ]


def _dockerd_available() -> str | None:
    """Why the real-daemon test cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to start dockerd"
    path = f"{os.environ['PATH']}:/usr/sbin:/sbin"
    for tool in ("dockerd", "docker", "unshare"):
        if shutil.which(tool, path=path) is None:
            return f"{tool} not installed (scripts/ensure-docker.sh installs docker.io)"
    return None


def _stop(pidfile: Path, name: str) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if Path(f"/proc/{pid}/comm").exists() and Path(f"/proc/{pid}/comm").read_text().strip() == name:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}/comm").exists() and time.monotonic() < deadline:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.split(") ")[1].startswith("Z"):
                break
            time.sleep(0.2)
        else:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def isolated_daemon() -> Iterator[dict[str, str]]:
    """Settings for a second dockerd that shares nothing with the machine's own engine.

    The script is run under `unshare --net`: --bridge=none makes dockerd delete the host's
    docker0 bridge, which must only happen in a throwaway network namespace.
    """
    reason = _dockerd_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to start dockerd: {reason}")
        pytest.skip(reason)
    # Short path: unix socket paths (containerd's below exec-root too) are limited to 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="c2c-dd-", dir="/tmp"))
    env = {
        "DOCKER_HOST": f"unix://{base}/docker.sock",
        "C2C_DOCKERD_DATA_ROOT": str(base / "data"),
        "C2C_DOCKERD_EXEC_ROOT": str(base / "exec"),
        "C2C_STATE_DIR": str(base / "state"),
        "C2C_LOCK_DIR": str(base / "locks"),
        "C2C_DOCKERD_EXTRA_ARGS": "--bridge=none --iptables=false --ip-masq=false "
        "--ip-forward=false --storage-driver=vfs",
        "C2C_DOCKERD_WAIT": "60",
        "BASE": str(base),
    }
    try:
        yield env
    finally:
        _stop(base / "state" / "dockerd.pid", "dockerd")
        _stop(base / "exec" / "containerd" / "containerd.pid", "containerd")
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):
            mountpoint = line.split()[1]
            if mountpoint.startswith(f"{base}/"):
                subprocess.run(["umount", "-l", mountpoint], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _ensure(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--net", str(SCRIPTS / "ensure-docker.sh")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _answers(env: dict[str, str]) -> bool:
    result = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        env={**os.environ, "DOCKER_HOST": env["DOCKER_HOST"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0 and bool(result.stdout.strip())


def test_starts_dockerd_and_recovers_after_it_was_killed(isolated_daemon: dict[str, str]) -> None:
    env = isolated_daemon
    base = Path(env["BASE"])
    assert not _answers(env)

    first = _ensure(env)
    assert first.returncode == 0, first.stderr
    assert "starting dockerd" in first.stderr
    assert _answers(env)
    assert (base / "state" / "dockerd.log").stat().st_size > 0
    # The daemon must not inherit the script's flock fd, or the lock outlives the script.
    daemon = int((base / "state" / "dockerd.pid").read_text())
    held = [os.readlink(fd) for fd in Path(f"/proc/{daemon}/fd").iterdir()]
    assert not [target for target in held if target.startswith(env["C2C_LOCK_DIR"])]

    # Already up: nothing to start.
    again = _ensure(env)
    assert again.returncode == 0, again.stderr
    assert "starting dockerd" not in again.stderr

    # What CI's clean-up leaves: daemon and its containerd killed, pidfiles and sockets kept.
    dockerd_pid = int((base / "state" / "dockerd.pid").read_text())
    containerd_pid = int((base / "exec" / "containerd" / "containerd.pid").read_text())
    os.kill(dockerd_pid, signal.SIGKILL)
    os.kill(containerd_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _answers(env):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (base / "state" / "dockerd.pid").exists()
    assert (base / "docker.sock").exists()

    restarted = _ensure(env)
    assert restarted.returncode == 0, restarted.stderr
    assert "removing stale pidfile" in restarted.stderr
    assert "starting dockerd" in restarted.stderr
    assert _answers(env)
    assert int((base / "state" / "dockerd.pid").read_text()) != dockerd_pid
