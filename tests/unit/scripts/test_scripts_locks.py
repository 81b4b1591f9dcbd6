"""scripts/lib.sh's locks: c2c_lock holds a flock until the script ends or c2c_unlock, and a
process started after c2c_close_lock_fds does not keep it (the apt install releases its lock
before the build it precedes; dockerd must not hold the install lock for its whole life)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.unit.scripts.scripts_harness import source_and_run


def _state(lock: Path) -> str:
    """Whether another process can take the lock right now: "free" or "held"."""
    taken = subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0
    return "free" if taken else "held"


def test_lock_is_held_until_unlock(tmp_path: Path) -> None:
    lock, other = tmp_path / "a.lock", tmp_path / "b.lock"
    # The snippet reports what a second process sees at each step (flock -n from outside).
    probe = 'flock -n "$1" true && echo free || echo held'
    result = source_and_run(
        "lib.sh",
        f"""
        probe() {{ {probe}; }}
        c2c_lock "$LOCK" 5; c2c_lock "$OTHER" 5
        probe "$LOCK"; c2c_unlock "$LOCK"; probe "$LOCK"; probe "$OTHER"
        c2c_unlock "$LOCK"  # a second unlock is a no-op
        c2c_lock "$LOCK" 5; probe "$LOCK"
        """,
        env={"LOCK": str(lock), "OTHER": str(other)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["held", "free", "held", "held"]
    assert _state(lock) == _state(other) == "free"  # the script ended: both released


def test_a_process_started_after_closing_the_fds_does_not_hold_the_lock(tmp_path: Path) -> None:
    lock, pidfile = tmp_path / "a.lock", tmp_path / "sleeper.pid"
    result = source_and_run(
        "lib.sh",
        """
        c2c_lock "$LOCK" 5
        ( c2c_close_lock_fds; exec sleep 30 >/dev/null 2>&1 ) & echo $! > "$PIDFILE"
        ( exec sleep 30 >/dev/null 2>&1 ) & echo $! >> "$PIDFILE"
        """,
        env={"LOCK": str(lock), "PIDFILE": str(pidfile)},
    )
    pids = pidfile.read_text().split()
    try:
        assert result.returncode == 0, result.stderr
        # The second sleeper inherited the fd: it holds the lock after the script ended.
        assert _state(lock) == "held"
        subprocess.run(["kill", pids[1]], check=True)
        subprocess.run(["tail", f"--pid={pids[1]}", "-f", "/dev/null"], timeout=10, check=False)
        # The first one, started after c2c_close_lock_fds, does not.
        assert _state(lock) == "free"
    finally:
        subprocess.run(["kill", *pids], capture_output=True, check=False)
