"""Names, paths and addresses of a lab: pure functions of the lab name, host names and underlay.

Everything a lab creates is named from its lab name, so `down` (and `status`) find it again on
the machine without any saved state, also after an interrupted run.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Lab and host names end up in interface names (Linux allows at most 15 characters):
# bridge "c2c<lab>0" and host-side veth "c2c<lab>-<host>" (3 + 6 + 1 + 5 = 15).
LAB_NAME_RE = re.compile(r"[a-z][a-z0-9]{0,5}\Z")
HOST_NAME_RE = re.compile(r"[a-z][a-z0-9]{0,4}\Z")

DEFAULT_LAB = "lab"
DEFAULT_HOSTS = ("a", "b")
DEFAULT_UNDERLAY = ipaddress.IPv4Network("198.18.0.0/24")
# RFC 2544's benchmarking block: never routed on the internet, so nothing here can collide with
# a real network, and every lab address stays on this machine.
UNDERLAY_BLOCK = ipaddress.IPv4Network("198.18.0.0/15")

STATE_ROOT = Path("/var/lib/c2c-lab")  # data roots (images, containers, swarm state)
RUN_ROOT = Path("/run/c2c-lab")  # sockets, pidfiles, exec roots, logs
NETNS_DIR = Path("/run/netns")  # where `ip netns` keeps its namespace files
LOCK_DIR = Path("/run/lock")

HOST_IFNAME = "eth0"  # the host's side of its veth, inside its namespace


class LabError(Exception):
    """A lab operation cannot go on; the message says why and what to do."""


def check_lab_name(name: str) -> str:
    if not LAB_NAME_RE.match(name):
        raise LabError(
            f"lab name {name!r}: use 1-6 characters, a lowercase letter then letters or digits"
        )
    return name


def check_host_names(names: Sequence[str]) -> tuple[str, ...]:
    if not names:
        raise LabError("a lab needs at least one host")
    for name in names:
        if not HOST_NAME_RE.match(name):
            raise LabError(
                f"host name {name!r}: use 1-5 characters, a lowercase letter then letters or digits"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LabError(f"host names repeated: {', '.join(duplicates)}")
    return tuple(names)


def parse_host_list(text: str) -> tuple[str, ...]:
    """`a,b` -> ("a", "b"); blanks around names are ignored."""
    return check_host_names([part.strip() for part in text.split(",") if part.strip()])


@dataclass(frozen=True)
class AddressPlan:
    """The underlay: the bridge's address (the last usable one) and host i at network + i."""

    network: ipaddress.IPv4Network

    def __post_init__(self) -> None:
        if not self.network.subnet_of(UNDERLAY_BLOCK):
            raise LabError(f"underlay {self.network} is outside {UNDERLAY_BLOCK} (RFC 2544)")
        if self.network.prefixlen > 29:
            raise LabError(f"underlay {self.network} is too small: use /29 or larger")

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.network.broadcast_address - 1}/{self.prefixlen}")

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    @property
    def capacity(self) -> int:
        # Every address but the network, the broadcast and the bridge's own.
        return self.network.num_addresses - 3

    def host(self, index: int) -> ipaddress.IPv4Interface:
        """Address of the host at position `index` (0-based) of the lab's host list."""
        if not 0 <= index < self.capacity:
            raise LabError(f"underlay {self.network} has room for {self.capacity} hosts")
        return ipaddress.IPv4Interface(
            f"{self.network.network_address + index + 1}/{self.prefixlen}"
        )

    def hosts(self, names: Sequence[str]) -> dict[str, ipaddress.IPv4Interface]:
        return {name: self.host(i) for i, name in enumerate(names)}


@dataclass(frozen=True)
class LabNames:
    """Every name and path a lab uses, derived from its name alone."""

    lab: str

    def __post_init__(self) -> None:
        check_lab_name(self.lab)

    @property
    def bridge(self) -> str:
        return f"c2c{self.lab}0"

    @property
    def netns_prefix(self) -> str:
        return f"c2c-{self.lab}-"

    @property
    def veth_prefix(self) -> str:
        return f"c2c{self.lab}-"

    @property
    def rule_comment(self) -> str:
        """The iptables comment on every rule of this lab, to find and delete them."""
        return f"c2c-lab:{self.lab}"

    @property
    def label(self) -> str:
        """Engine label `c2c.lab=<lab>`."""
        return f"c2c.lab={self.lab}"

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.lab

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.lab

    @property
    def lock_file(self) -> Path:
        return LOCK_DIR / f"c2c-lab-{self.lab}.lock"

    def netns(self, host: str) -> str:
        return f"{self.netns_prefix}{host}"

    def netns_path(self, host: str) -> Path:
        return NETNS_DIR / self.netns(host)

    def veth(self, host: str) -> str:
        return f"{self.veth_prefix}{host}"

    def host_of_netns(self, netns: str) -> str | None:
        """The host a namespace name belongs to in this lab, else None."""
        return _suffix_host(netns, self.netns_prefix)

    def host_of_veth(self, ifname: str) -> str | None:
        return _suffix_host(ifname, self.veth_prefix)

    def data_root(self, host: str) -> Path:
        return self.state_dir / host

    def host_run_dir(self, host: str) -> Path:
        return self.run_dir / host

    def exec_root(self, host: str) -> Path:
        return self.host_run_dir(host) / "exec"

    def socket(self, host: str) -> Path:
        return self.host_run_dir(host) / "docker.sock"

    def docker_host(self, host: str) -> str:
        return f"unix://{self.socket(host)}"

    def pidfile(self, host: str) -> Path:
        return self.host_run_dir(host) / "dockerd.pid"

    def log_file(self, host: str) -> Path:
        return self.host_run_dir(host) / "dockerd.log"

    def cgroup_parent(self, host: str) -> str:
        """Containers of this engine live under this cgroup (cgroupfs driver), apart from other
        engines' and findable after a crash."""
        return f"/c2c-lab-{self.lab}-{host}"


def _suffix_host(name: str, prefix: str) -> str | None:
    if not name.startswith(prefix):
        return None
    host = name[len(prefix) :]
    return host if HOST_NAME_RE.match(host) else None


def is_removable_dir(path: Path) -> bool:
    """True for a directory strictly below the lab's state or run root: the only places the lab
    ever deletes recursively."""
    resolved = Path(path).resolve()
    return any(
        resolved != root and resolved.is_relative_to(root) for root in (STATE_ROOT, RUN_ROOT)
    )
