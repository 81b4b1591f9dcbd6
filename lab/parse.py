"""Pure parsers for what `ip -j`, iptables, docker and /proc print. No I/O here.

Each parser is unit-tested on output captured from a real lab run (tests/unit/lab/fixtures/).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any


@dataclass(frozen=True)
class Link:
    """One interface from `ip -j -d link show`."""

    name: str
    kind: str | None  # "bridge", "veth", ... (None for plain devices such as lo)
    master: str | None  # the bridge it is enslaved to
    up: bool  # administratively up (the UP flag)


@dataclass(frozen=True)
class Route:
    dst: str  # "default" or a CIDR
    dev: str | None
    gateway: str | None


@dataclass(frozen=True)
class SwarmState:
    """The Swarm part of `docker info --format '{{json .Swarm}}'`."""

    state: str  # "inactive", "pending", "active", "error", "locked"
    node_id: str
    is_manager: bool
    node_addr: str
    nodes: int  # known to managers only; 0 on workers


def _json_list(text: str) -> list[dict[str, Any]]:
    # `ip -j netns list` prints nothing at all when there is no namespace.
    if not text.strip():
        return []
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON list, got {type(data).__name__}")
    return [item for item in data if isinstance(item, dict)]


def parse_netns_list(text: str) -> list[str]:
    """Namespace names from `ip -j netns list`."""
    return [str(item["name"]) for item in _json_list(text) if "name" in item]


def parse_links(text: str) -> dict[str, Link]:
    """Interfaces by name from `ip -j -d link show`."""
    links: dict[str, Link] = {}
    for item in _json_list(text):
        linkinfo = item.get("linkinfo") or {}
        kind = linkinfo.get("info_kind")
        links[str(item["ifname"])] = Link(
            name=str(item["ifname"]),
            kind=str(kind) if kind else None,
            master=str(item["master"]) if item.get("master") else None,
            up="UP" in (item.get("flags") or []),
        )
    return links


def parse_ipv4_addresses(text: str) -> dict[str, list[ipaddress.IPv4Interface]]:
    """IPv4 addresses (with prefix) per interface from `ip -j addr show`."""
    result: dict[str, list[ipaddress.IPv4Interface]] = {}
    for item in _json_list(text):
        addresses = result.setdefault(str(item["ifname"]), [])
        for info in item.get("addr_info") or []:
            if info.get("family") == "inet":
                addresses.append(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}"))
    return result


def parse_routes(text: str) -> list[Route]:
    """Routes from `ip -j route show`."""
    return [
        Route(
            dst=str(item["dst"]),
            dev=str(item["dev"]) if item.get("dev") else None,
            gateway=str(item["gateway"]) if item.get("gateway") else None,
        )
        for item in _json_list(text)
    ]


def parse_swarm(text: str) -> SwarmState:
    """`docker info --format '{{json .Swarm}}'`."""
    data = json.loads(text)
    return SwarmState(
        state=str(data.get("LocalNodeState") or "inactive"),
        node_id=str(data.get("NodeID") or ""),
        is_manager=bool(data.get("ControlAvailable")),
        node_addr=str(data.get("NodeAddr") or ""),
        nodes=int(data.get("Nodes") or 0),
    )


def rules_with_comment(iptables_s: str, comment: str) -> list[list[str]]:
    """The `-A CHAIN ...` rules of `iptables -S` (one table) that carry `--comment <comment>`,
    as argument lists (without "-A"), ready for `iptables -D`."""
    rules = []
    for line in iptables_s.splitlines():
        words = shlex.split(line)
        if len(words) < 2 or words[0] != "-A":
            continue
        for i, word in enumerate(words[:-1]):
            if word == "--comment" and words[i + 1] == comment:
                rules.append(words[1:])
                break
    return rules


def _unescape_mount_path(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field) >= i + 4:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_below(mountinfo: str, roots: list[PurePosixPath]) -> list[str]:
    """Mount points from /proc/self/mountinfo at or below any of `roots`, deepest first (the
    order to unmount them in)."""
    found = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        mount_point = PurePosixPath(_unescape_mount_path(fields[4]))
        if any(mount_point == root or mount_point.is_relative_to(root) for root in roots):
            found.add(str(mount_point))
    return sorted(found, key=lambda p: (-p.count("/"), p))


def cgroup_paths(proc_cgroup: str) -> set[str]:
    """The cgroup paths of a process, over every hierarchy, from /proc/<pid>/cgroup."""
    paths = set()
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths.add(parts[2])
    return paths


def in_cgroup(paths: set[str], parent: str) -> bool:
    return any(path == parent or path.startswith(parent + "/") for path in paths)


def parse_pidfile(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def proc_state(stat: str) -> str:
    """The state letter of /proc/<pid>/stat ("Z" for a zombie); the name may hold spaces and
    parentheses, so read after the last ')'."""
    tail = stat.rsplit(")", 1)[-1].split()
    return tail[0] if tail else ""
