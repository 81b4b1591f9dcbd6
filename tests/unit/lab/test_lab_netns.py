"""lab.netns: the call runs in another thread, and its result or exception comes back."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lab.netns import netns_file, nsenter_argv, run_in_netns

OWN_NETNS = Path("/proc/self/ns/net")


def test_names_resolve_under_run_netns_and_paths_stay() -> None:
    assert netns_file("c2c-lab-a") == Path("/run/netns/c2c-lab-a")
    assert netns_file(OWN_NETNS) == OWN_NETNS
    assert nsenter_argv("c2c-lab-a", ["ip", "-j", "link"]) == [
        "nsenter", "--net=/run/netns/c2c-lab-a", "--", "ip", "-j", "link",
    ]  # fmt: skip


def test_missing_namespace_raises_in_the_caller() -> None:
    with pytest.raises(FileNotFoundError):
        run_in_netns("c2c-no-such-namespace", lambda: 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="setns(2) needs CAP_SYS_ADMIN")
def test_call_runs_in_its_own_thread_and_returns_or_raises() -> None:
    # Joining our own namespace changes nothing, so this is safe anywhere as root.
    caller = threading.get_ident()
    assert run_in_netns(OWN_NETNS, threading.get_ident) != caller
    assert run_in_netns(OWN_NETNS, lambda: os.stat("/proc/thread-self/ns/net").st_ino) == (
        os.stat("/proc/self/ns/net").st_ino
    )

    def fail() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        run_in_netns(OWN_NETNS, fail)
