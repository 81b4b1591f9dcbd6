"""Act inside a lab host's network namespace from this process, or run a command there.

setns(2) on a network namespace switches only the calling thread, so `run_in_netns` does it in
a fresh thread that exits afterwards: the rest of the process stays where it was. Sockets keep
the namespace they were created in, so a socket made inside the callable can be used from any
thread afterwards.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lab.naming import NETNS_DIR

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_file(netns: str | Path) -> Path:
    """A namespace name ("c2c-lab-a") or a path to a namespace file (/proc/<pid>/ns/net)."""
    path = Path(netns)
    return path if path.is_absolute() else NETNS_DIR / path


def _setns(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def run_in_netns(netns: str | Path, fn: Callable[[], T], timeout: float | None = 60) -> T:
    """Call `fn()` in a thread that has joined the network namespace `netns`; return its result
    or raise its exception. Raises TimeoutError if it has not returned after `timeout` s (the
    thread is left to finish on its own)."""
    path = netns_file(netns)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            _setns(path)
            outcome["result"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns:{path.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"call in network namespace {path} still running after {timeout}s")
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["result"]
    return result


def nsenter_argv(netns: str | Path, argv: Sequence[str]) -> list[str]:
    """`argv` run in the namespace. nsenter joins only the network namespace; `ip netns exec`
    would also remount /sys, under which dockerd fails ("Devices cgroup isn't mounted")."""
    return ["nsenter", f"--net={netns_file(netns)}", "--", *argv]


def run_in_netns_command(
    netns: str | Path, argv: Sequence[str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """subprocess.run of `argv` inside the namespace, text mode, output captured unless the
    caller says otherwise."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("check", False)
    result: subprocess.CompletedProcess[str] = subprocess.run(nsenter_argv(netns, argv), **kwargs)
    return result
