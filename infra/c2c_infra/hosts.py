"""The Docker hosts a stack runs on: `c2c:hosts`, a map of host name -> Docker URL.

Each entry is either the URL alone, when the URL names the host clients reach (tcp://, ssh://):

    c2c:hosts:
      a: tcp://10.0.0.1:2376
      b: ssh://deploy@10.0.0.2

or an object with the URL and the address clients reach the host at, which a unix:// socket
cannot tell (the lab's engines are local sockets of hosts on an underlay network):

    c2c:hosts:
      a: {url: unix:///run/c2c-lab/lab/a/docker.sock, address: 198.18.0.1}

An empty map (the default) is the single-host program: the engine DOCKER_HOST names, through
the default provider. That host is called DEFAULT_HOST in outputs.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict

# The engine the default provider uses (DOCKER_HOST or the local socket) when c2c:hosts is empty.
DEFAULT_HOST = "default"
DEFAULT_HOST_ADDRESS = "localhost"
SCHEMES = ("unix", "tcp", "ssh")
# Host names become part of Pulumi resource names (c2c-host-<name>) and of outputs.
_HOST_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
# An RFC 1123 DNS name: labels of letters, digits and inner hyphens.
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_ENTRY_KEYS = ("url", "address")


class DockerHost(BaseModel):
    """One host: its name, the Docker URL of its engine (None: the default provider's engine),
    and the address a client uses for a port published there."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str | None
    address: str

    @property
    def url_host(self) -> str:
        """The address as a URL's host part (IPv6 in brackets)."""
        return f"[{self.address}]" if ":" in self.address else self.address


def default_host() -> DockerHost:
    return DockerHost(name=DEFAULT_HOST, url=None, address=DEFAULT_HOST_ADDRESS)


def parse_hosts(raw: Any) -> dict[str, DockerHost]:
    """`c2c:hosts` as the CLI hands it (a JSON object) -> hosts by name, in the given order.

    Raises ValueError naming every bad entry, joined into one line.
    """
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise ValueError(f"{raw!r} is not a map of host name -> Docker URL") from None
    if not isinstance(data, dict):
        raise ValueError(f"{raw!r} is not a map of host name -> Docker URL")
    hosts: dict[str, DockerHost] = {}
    problems: list[str] = []
    for name, entry in data.items():
        try:
            hosts[name] = _host(name, entry)
        except ValueError as err:
            problems.append(f"host {name!r}: {err}")
    if problems:
        raise ValueError("; ".join(problems))
    return hosts


def _host(name: str, entry: Any) -> DockerHost:
    if not _HOST_NAME.match(name):
        raise ValueError("a host name is 1-32 lowercase letters, digits and inner '-'")
    if name == DEFAULT_HOST:
        raise ValueError(f"{DEFAULT_HOST!r} names the engine DOCKER_HOST points at; pick another")
    url: Any
    address: Any
    if isinstance(entry, str):
        url, address = entry, None
    elif isinstance(entry, dict):
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}; an entry has url and address")
        url, address = entry.get("url"), entry.get("address")
        if not isinstance(url, str):
            raise ValueError("url (the engine's Docker URL) is required")
        if address is not None and not isinstance(address, str):
            raise ValueError(f"address {address!r} is not an IP address or DNS name")
    else:
        raise ValueError(f"{entry!r} is neither a Docker URL nor {{url, address}}")
    parts = _docker_url(url)
    if address is None:
        if parts.scheme == "unix":
            raise ValueError(
                f"{url} is a local socket: give the host's address too, "
                "{url: unix://..., address: <IP or DNS name clients reach it at>}"
            )
        address = parts.hostname or ""
    return DockerHost(name=name, url=url, address=_address(address))


def _docker_url(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"url {url!r}: use a unix://, tcp:// or ssh:// URL")
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"url {url!r}: a unix:// URL holds an absolute socket path")
        return parts
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"url {url!r} has an invalid port") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"url {url!r} is not {parts.scheme}://[user@]host[:port]")
    return parts


def _address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if not _DNS_NAME.match(address):
        raise ValueError(f"address {address!r} is not an IP address or DNS name")
    return address
