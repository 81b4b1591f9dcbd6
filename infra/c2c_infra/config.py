"""The stack's `c2c:*` configuration, read once, validated, frozen.

Every check runs before the program declares a single resource, so a bad value stops
`pulumi up` with one line per bad key (`c2c:<key>: <why>`) and leaves nothing half-built on
the Docker host. Defaults are not repeated here: they live in the `config:` block of
Pulumi.yaml, which the CLI merges into every stack; a key that reaches the program unset is
therefore an error, not a silent fallback.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import pulumi

PROJECT = "c2c"
SERVICES = ("internal", "external")

# Every key the program reads, with the type Pulumi.yaml declares for it (the unit tests
# hold the two in step). Integers only: the project config schema has no float type, so
# timeouts are whole milliseconds.
CONFIG_TYPES: Mapping[str, str] = {
    "subnet": "string",
    "gateway": "string",
    "internalIp": "string",
    "externalIp": "string",
    "hostPort": "integer",
    "externalPort": "integer",
    "internalPort": "integer",
    "hostBindAddress": "string",
    "baseImage": "string",
    "upstreamConnectTimeoutMs": "integer",
    "upstreamReadTimeoutMs": "integer",
    "upstreamRetries": "integer",
    "workers": "integer",
    "threads": "integer",
    "memoryLimitMb": "integer",
    "nprocLimit": "integer",
    "restartPolicy": "string",
    "restartMaxRetries": "integer",
}

RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")

# Docker's grammar for one path component of an image name: the stack name becomes part of
# `c2c-<stack>-<service>`, so it must be lowercase and use only these separators.
_STACK_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_STACK_NAME_MAX = 40
# A loose image reference: registry/repo:tag@digest characters, no spaces or shell syntax.
_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")


class ConfigReader(Protocol):
    """What the loader needs from `pulumi.Config`: a raw string per key, or None."""

    def get(self, key: str) -> str | None: ...


class ConfigError(pulumi.RunError):
    """Invalid stack configuration.

    A `pulumi.RunError`, so the Python language host prints the message as one clean error
    line per problem instead of a traceback. The first line names the first bad key.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"{key}: {reason}" for key, reason in self.problems))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.problems]


@dataclass(frozen=True)
class StackSettings:
    """Validated settings of one stack; every Docker name and label derives from here."""

    stack: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    internal_ip: ipaddress.IPv4Address
    external_ip: ipaddress.IPv4Address
    host_port: int
    external_port: int
    internal_port: int
    host_bind_address: IPAddress
    base_image: str
    upstream_connect_timeout_ms: int
    upstream_read_timeout_ms: int
    upstream_retries: int
    workers: int
    threads: int
    memory_limit_mb: int
    nproc_limit: int
    restart_policy: str
    restart_max_retries: int

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.stack}"

    @property
    def network_name(self) -> str:
        return f"{self.prefix}-net"

    def container_name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def image_repository(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    @property
    def labels(self) -> dict[str, str]:
        return {"c2c.project": PROJECT, "c2c.stack": self.stack}

    @property
    def internal_url(self) -> str:
        return f"http://{self.internal_ip}:{self.internal_port}"

    @property
    def endpoint(self) -> str:
        # A wildcard bind is reachable on loopback; a specific address only on itself.
        if self.host_bind_address.is_unspecified:
            host = "localhost"
        elif self.host_bind_address.version == 6:
            host = f"[{self.host_bind_address}]"
        else:
            host = str(self.host_bind_address)
        return f"http://{host}:{self.host_port}"


def load_settings(cfg: ConfigReader, stack: str) -> StackSettings:
    """Read and check every key; raise ConfigError listing all problems at once."""
    check = _Checker(cfg)
    _check_stack_name(check, stack)

    subnet = check.parse("subnet", _ipv4_network)
    gateway = check.parse("gateway", _ipv4_address)
    internal_ip = check.parse("internalIp", _ipv4_address)
    external_ip = check.parse("externalIp", _ipv4_address)
    host_port = check.integer("hostPort", 1, 65535)
    external_port = check.integer("externalPort", 1, 65535)
    internal_port = check.integer("internalPort", 1, 65535)
    host_bind_address: IPAddress | None = check.parse("hostBindAddress", _ip_address)
    base_image = check.parse("baseImage", _image_reference)
    connect_ms = check.integer("upstreamConnectTimeoutMs", 50, 10_000)
    read_ms = check.integer("upstreamReadTimeoutMs", 50, 60_000)
    retries = check.integer("upstreamRetries", 0, 10)
    workers = check.integer("workers", 1, 32)
    threads = check.integer("threads", 1, 64)
    memory = check.integer("memoryLimitMb", 32, 65_536)
    nproc = check.integer("nprocLimit", 32, 65_536)
    restart = check.parse("restartPolicy", _restart_policy)
    max_retries = check.integer("restartMaxRetries", 0, 100)

    if subnet is not None:
        _check_addresses(check, subnet, gateway, internal_ip, external_ip)
    if nproc is not None and workers is not None and threads is not None:
        _check_nproc(check, nproc, workers, threads)

    if check.problems:
        raise ConfigError(check.problems)
    return StackSettings(
        stack=stack,
        subnet=_parsed(subnet),
        gateway=_parsed(gateway),
        internal_ip=_parsed(internal_ip),
        external_ip=_parsed(external_ip),
        host_port=_parsed(host_port),
        external_port=_parsed(external_port),
        internal_port=_parsed(internal_port),
        host_bind_address=_parsed_address(host_bind_address),
        base_image=_parsed(base_image),
        upstream_connect_timeout_ms=_parsed(connect_ms),
        upstream_read_timeout_ms=_parsed(read_ms),
        upstream_retries=_parsed(retries),
        workers=_parsed(workers),
        threads=_parsed(threads),
        memory_limit_mb=_parsed(memory),
        nproc_limit=_parsed(nproc),
        restart_policy=_parsed(restart),
        restart_max_retries=_parsed(max_retries),
    )


def _parsed(value: T | None) -> T:
    # Only reached when no problem was recorded, i.e. every key parsed.
    if value is None:
        raise RuntimeError("a config value is missing although no problem was recorded")
    return value


def _parsed_address(value: IPAddress | None) -> IPAddress:
    # _parsed for a union: mypy would widen its TypeVar to the common base class.
    if value is None:
        raise RuntimeError("hostBindAddress is missing although no problem was recorded")
    return value


def qualified(key: str) -> str:
    return f"{PROJECT}:{key}"


class _Checker:
    """Collects problems as `(c2c:key, reason)` so one run reports every bad key."""

    def __init__(self, cfg: ConfigReader) -> None:
        self._cfg = cfg
        self.problems: list[tuple[str, str]] = []

    def fail(self, key: str, reason: str) -> None:
        self.problems.append((qualified(key), reason))

    def raw(self, key: str) -> str | None:
        value = self._cfg.get(key)
        if value is None or not value.strip():
            self.fail(key, "is required but not set (Pulumi.yaml declares its default)")
            return None
        return value.strip()

    def parse(self, key: str, parser: Callable[[str], T]) -> T | None:
        raw = self.raw(key)
        if raw is None:
            return None
        try:
            return parser(raw)
        except ValueError as err:
            self.fail(key, f"{raw!r} {err}")
            return None

    def integer(self, key: str, low: int, high: int) -> int | None:
        def parse(raw: str) -> int:
            try:
                value = int(raw)
            except ValueError:
                raise ValueError("is not an integer") from None
            if not low <= value <= high:
                raise ValueError(f"is outside {low}-{high}")
            return value

        return self.parse(key, parse)


def _check_stack_name(check: _Checker, stack: str) -> None:
    if _STACK_NAME.fullmatch(stack) and len(stack) <= _STACK_NAME_MAX:
        return
    check.problems.append(
        (
            f"stack {stack!r}",
            "must be lowercase letters and digits joined by single '.', '_' or '-', at "
            f"most {_STACK_NAME_MAX} characters: Docker image names c2c-<stack>-<service> "
            "derive from it",
        )
    )


def _check_addresses(
    check: _Checker,
    subnet: ipaddress.IPv4Network,
    gateway: ipaddress.IPv4Address | None,
    internal_ip: ipaddress.IPv4Address | None,
    external_ip: ipaddress.IPv4Address | None,
) -> None:
    """Gateway and both containers: inside the subnet, host addresses, pairwise distinct."""
    if subnet.num_addresses < 8:
        # /30 and smaller leave fewer than three usable hosts: gateway + two containers.
        check.fail("subnet", f"{subnet} is too small; use a /29 or larger")
        return
    if gateway is not None and _host_address_problem(check, "gateway", gateway, subnet):
        gateway = None
    named: list[tuple[str, ipaddress.IPv4Address]] = []
    for key, address in (("internalIp", internal_ip), ("externalIp", external_ip)):
        if address is None or _host_address_problem(check, key, address, subnet):
            continue
        if gateway is not None and address == gateway:
            check.fail(key, f"{address} equals c2c:gateway; the bridge itself holds that address")
            continue
        for other_key, other in named:
            if address == other:
                check.fail(
                    key, f"{address} equals {qualified(other_key)}; each container needs its own"
                )
                break
        else:
            named.append((key, address))


def _host_address_problem(
    check: _Checker, key: str, address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network
) -> bool:
    if address not in subnet:
        check.fail(key, f"{address} is outside c2c:subnet {subnet}")
    elif address == subnet.network_address:
        check.fail(key, f"{address} is the network address of c2c:subnet {subnet}")
    elif address == subnet.broadcast_address:
        check.fail(key, f"{address} is the broadcast address of c2c:subnet {subnet}")
    else:
        return False
    return True


def _check_nproc(check: _Checker, nproc: int, workers: int, threads: int) -> None:
    # RLIMIT_NPROC counts every task (threads too) of uid 10001 on the host, so both
    # containers share it: per container a gunicorn master, and per worker its main thread,
    # its request threads and a heartbeat, plus room for healthcheck execs and a second stack.
    needed = 2 * (2 * (1 + workers * (threads + 2))) + 16
    if nproc < needed:
        check.fail(
            "nprocLimit",
            f"{nproc} is below {needed}, the estimate for two stacks of two containers with "
            f"c2c:workers={workers} and c2c:threads={threads}",
        )


def _ipv4_network(raw: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(raw, strict=True)
    except ValueError as err:
        raise ValueError(f"is not a valid CIDR network ({err})") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError("is not an IPv4 network; the bridge is IPv4-only")
    return network


def _ipv4_address(raw: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError("is not an IP address") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError("is not an IPv4 address; the bridge is IPv4-only")
    return address


def _ip_address(raw: str) -> IPAddress:
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError("is not an IP address (0.0.0.0 binds every address)") from None


def _image_reference(raw: str) -> str:
    if not _IMAGE_REF.fullmatch(raw):
        raise ValueError("is not an image reference like python:3.11-slim")
    return raw


def _restart_policy(raw: str) -> str:
    if raw not in RESTART_POLICIES:
        raise ValueError(f"is not one of {', '.join(RESTART_POLICIES)}")
    return raw
