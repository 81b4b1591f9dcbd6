"""The stack's `c2c:*` configuration: one pydantic schema, validated once, frozen.

StackSettings is the one list of what the program reads: each field after `stack` is a config
key (its camelCase alias, e.g. `internalIp`), and its type says how the raw string is parsed and
checked. Pulumi.yaml declares the same keys with type, default and description (a unit test
keeps the two in step). Defaults live only there; the CLI merges them into every stack, so a
key that reaches the program unset is an error, not a silent fallback.

Validation runs before the program declares any resource and reports every bad key at once,
one line each: `c2c:<key>: <why>`. A check that relates keys (an address inside the subnet, the
nproc budget of workers and threads, the host each service runs on) reads the keys declared
before it, and only those that passed: a bad subnet gives one line, not one more per address.

Keys whose Pulumi.yaml default is blank ("" : not set) are optional fields: None when blank.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, get_args, get_origin

import pulumi
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ValidationInfo

from c2c_infra.hosts import DockerHost, default_host, parse_hosts

PROJECT = "c2c"
SERVICES = ("internal", "external")
MISSING = "is required but not set (Pulumi.yaml declares its default)"

# Docker's grammar for one path component of an image name: the stack name becomes part of
# `c2c-<stack>-<service>`, so it must be lowercase and use only these separators.
_STACK_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_STACK_NAME_MAX = 40
# A loose image reference: registry/repo:tag@digest characters, no spaces or shell syntax.
_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")

RestartPolicy = Literal["no", "on-failure", "always", "unless-stopped"]
RESTART_POLICIES: tuple[str, ...] = get_args(RestartPolicy)


def _from_text(parse: Callable[[str], object]) -> BeforeValidator:
    """Parse a key's raw string with `parse`; its ValueError becomes `'<raw>' <reason>`."""

    def validate(raw: Any) -> object:
        if raw is None:  # an optional key left blank
            return None
        try:
            return parse(raw)
        except ValueError as err:
            raise ValueError(f"{raw!r} {err}") from None

    return BeforeValidator(validate)


def _integer(low: int, high: int) -> BeforeValidator:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("is not an integer") from None
        if not low <= value <= high:
            raise ValueError(f"is outside {low}-{high}")
        return value

    return _from_text(parse)


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


def _ip_address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
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


def _stack_name(stack: str) -> str:
    if not (_STACK_NAME.fullmatch(stack) and len(stack) <= _STACK_NAME_MAX):
        raise ValueError(
            "must be lowercase letters and digits joined by single '.', '_' or '-', at "
            f"most {_STACK_NAME_MAX} characters: Docker image names c2c-<stack>-<service> "
            "derive from it"
        )
    return stack


def _host_reference(raw: str) -> str:
    # Checked against c2c:hosts by a field validator; here only that it is one word.
    if not re.fullmatch(r"[a-z0-9-]+", raw):
        raise ValueError("is not a host name of c2c:hosts")
    return raw


Port = Annotated[int, _integer(1, 65535)]
IPv4Address = Annotated[ipaddress.IPv4Address, _from_text(_ipv4_address)]

# A problem between keys: reported after every key's own format problems, as the CLI always has.
_RELATION = "c2c_relation"


def _relation(why: str) -> PydanticCustomError:
    return PydanticCustomError(_RELATION, "{why}", {"why": why})


# Why two addresses may not be equal, by the field that holds the earlier one.
_TAKEN_BY = {
    "gateway": "the bridge itself holds that address",
    "internal_ip": "each container needs its own",
}

# An optional key: blank in Pulumi.yaml, None here; validated even when blank.
_UNSET: Any = Field(default=None, validate_default=True)
HostReference = Annotated[str | None, _from_text(_host_reference)]


class StackSettings(BaseModel):
    """Validated settings of one stack; every Docker name and label derives from here.

    The fields after `stack` are the `c2c:*` keys, in Pulumi.yaml's order: problems are
    reported in this order.
    """

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, extra="forbid")

    stack: Annotated[str, BeforeValidator(_stack_name)]
    subnet: Annotated[ipaddress.IPv4Network, _from_text(_ipv4_network)]
    gateway: IPv4Address
    internal_ip: IPv4Address
    external_ip: IPv4Address
    host_port: Port
    external_port: Port
    internal_port: Port
    host_bind_address: Annotated[
        ipaddress.IPv4Address | ipaddress.IPv6Address, _from_text(_ip_address)
    ]
    base_image: Annotated[str, _from_text(_image_reference)]
    upstream_connect_timeout_ms: Annotated[int, _integer(50, 10_000)]
    upstream_read_timeout_ms: Annotated[int, _integer(50, 60_000)]
    upstream_retries: Annotated[int, _integer(0, 10)]
    workers: Annotated[int, _integer(1, 32)]
    threads: Annotated[int, _integer(1, 64)]
    memory_limit_mb: Annotated[int, _integer(32, 65_536)]
    nproc_limit: Annotated[int, _integer(32, 65_536)]
    restart_policy: Annotated[RestartPolicy, _from_text(_restart_policy)]
    restart_max_retries: Annotated[int, _integer(0, 100)]
    healthy_within_seconds: Annotated[int, _integer(10, 3600)]
    hosts: Annotated[dict[str, DockerHost], BeforeValidator(parse_hosts)]
    internal_host: HostReference = _UNSET
    external_host: HostReference = _UNSET
    swarm_manager: HostReference = _UNSET
    overlay_ip_range: Annotated[ipaddress.IPv4Network | None, _from_text(_ipv4_network)] = _UNSET
    internal_replicas: Annotated[int, _integer(1, 16)]
    upstream_max_requests_per_connection: Annotated[int, _integer(1, 1000)]

    @field_validator("subnet")
    @classmethod
    def _holds_three_hosts(cls, subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        # /30 and smaller leave fewer than three usable hosts: gateway + two containers.
        if subnet.num_addresses < 8:
            raise _relation(f"{subnet} is too small; use a /29 or larger")
        return subnet

    @field_validator("gateway", "internal_ip", "external_ip")
    @classmethod
    def _host_in_subnet(
        cls, address: ipaddress.IPv4Address, info: ValidationInfo
    ) -> ipaddress.IPv4Address:
        """Inside the subnet, a host address, and unlike every address declared before it."""
        subnet = info.data.get("subnet")
        if subnet is None:  # its own line says why; no more lines about it here
            return address
        if address not in subnet:
            raise _relation(f"{address} is outside c2c:subnet {subnet}")
        if address == subnet.network_address:
            raise _relation(f"{address} is the network address of c2c:subnet {subnet}")
        if address == subnet.broadcast_address:
            raise _relation(f"{address} is the broadcast address of c2c:subnet {subnet}")
        for field, reason in _TAKEN_BY.items():
            if field != info.field_name and info.data.get(field) == address:
                raise _relation(f"{address} equals {qualified(to_camel(field))}; {reason}")
        return address

    @field_validator("nproc_limit")
    @classmethod
    def _covers_two_stacks(cls, nproc: int, info: ValidationInfo) -> int:
        workers, threads = info.data.get("workers"), info.data.get("threads")
        if workers is None or threads is None:
            return nproc
        needed = _nproc_needed(workers, threads, internal_replicas=1)
        if nproc < needed:
            raise _relation(
                f"{nproc} is below {needed}, the estimate for two stacks of two containers with "
                f"c2c:workers={workers} and c2c:threads={threads}"
            )
        return nproc

    @field_validator("internal_host", "external_host", "swarm_manager")
    @classmethod
    def _names_a_host(cls, host: str | None, info: ValidationInfo) -> str | None:
        hosts = info.data.get("hosts")
        if hosts is None:  # c2c:hosts has its own line
            return host
        if not hosts:
            if host is not None:
                raise _relation(f"{host!r} needs c2c:hosts, which is empty (one engine)")
            return None
        choices = ", ".join(hosts)
        if host is None:
            if info.field_name == "swarm_manager":  # blank: external's host
                return None
            raise _relation(f"is required when c2c:hosts is set: one of {choices}")
        if host not in hosts:
            raise _relation(f"{host!r} is not a host of c2c:hosts ({choices})")
        return host

    @field_validator("overlay_ip_range")
    @classmethod
    def _swarm_range_outside_static_ips(
        cls, ip_range: ipaddress.IPv4Network | None, info: ValidationInfo
    ) -> ipaddress.IPv4Network | None:
        """Swarm takes addresses from this range (a load-balancer address per node): the
        gateway and the static IPs must lie outside it, else a container's start fails with
        "Address already in use". Checked only where it is used: on an overlay."""
        data = info.data
        internal, external = data.get("internal_host"), data.get("external_host")
        subnet = data.get("subnet")
        if internal is None or external is None or internal == external or subnet is None:
            return ip_range
        effective = ip_range or _upper_half(subnet)
        if not effective.subnet_of(subnet):
            raise _relation(f"{effective} is outside c2c:subnet {subnet}")
        if effective.num_addresses < 4:
            raise _relation(f"{effective} is too small for Swarm's addresses; use a /30 or larger")
        for field in ("gateway", "internal_ip", "external_ip"):
            address = data.get(field)
            if address is not None and address in effective:
                raise _relation(
                    f"{effective} holds {qualified(to_camel(field))} {address}; Swarm allocates "
                    "from this range, so static addresses must lie outside it"
                )
        return effective

    @field_validator("internal_replicas")
    @classmethod
    def _replicas_need_two_hosts(cls, replicas: int, info: ValidationInfo) -> int:
        """More than one internal is a Swarm service: only where an overlay joins the hosts."""
        if replicas == 1:
            return replicas
        data = info.data
        if not {"hosts", "internal_host", "external_host"} <= set(data):
            return replicas  # a placement key has its own line
        internal, external = data["internal_host"], data["external_host"]
        if not data["hosts"] or internal == external:
            raise _relation(
                f"{replicas} replicas run as a Swarm service, which needs a multi-host stack: "
                "c2c:hosts with c2c:internalHost and c2c:externalHost on different hosts"
            )
        workers, threads, nproc = data.get("workers"), data.get("threads"), data.get("nproc_limit")
        if workers is None or threads is None or nproc is None:
            return replicas
        needed = _nproc_needed(workers, threads, internal_replicas=replicas)
        if nproc < needed:
            # Swarm tasks get no ulimit, but external's RLIMIT_NPROC counts them all on its host.
            raise _relation(
                f"{replicas} replicas need c2c:nprocLimit {needed} or more "
                f"(c2c:nprocLimit is {nproc}): external's limit counts every replica on its host"
            )
        return replicas

    # --- where things run

    @property
    def multi_host(self) -> bool:
        """True when internal and external run on different hosts (an overlay joins them)."""
        return self.internal_host != self.external_host

    @property
    def network_driver(self) -> str:
        return "overlay" if self.multi_host else "bridge"

    @property
    def sandboxed(self) -> bool:
        """Does each service run as a sandbox and an app container (docs/zero-downtime.md)?
        Not on an overlay: an engine that starts again restores a container with a Swarm
        endpoint (the sandbox) only once it is back in the cluster, but one that joins another's
        namespace (the app) at once, and that start fails and is never retried. So there each
        service is one container that owns its address, restored by its restart policy when the
        node rejoins (docs/multihost.md)."""
        return not self.multi_host

    def host_of(self, service: str) -> DockerHost:
        """The host that runs `service` (the default engine's when c2c:hosts is empty)."""
        name = self.internal_host if service == "internal" else self.external_host
        return self.hosts[name] if name is not None else default_host()

    @property
    def network_host(self) -> DockerHost:
        """Where the network is created: a Swarm manager for an overlay (c2c:swarmManager,
        else external's host), else the one host both services run on."""
        if self.multi_host and self.swarm_manager is not None:
            return self.hosts[self.swarm_manager]
        return self.host_of("external")

    @property
    def swarm_ip_range(self) -> ipaddress.IPv4Network | None:
        """The overlay's ip_range (validated above); None on a bridge, which has none."""
        return self.overlay_ip_range if self.multi_host else None

    # --- names

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.stack}"

    @property
    def network_name(self) -> str:
        return f"{self.prefix}-net"

    def container_name(self, service: str) -> str:
        """The service's name: its sandbox's hostname, the prefix of its app containers' names;
        the name of its one container where there are no sandboxes."""
        return f"{self.prefix}-{service}"

    def sandbox_name(self, service: str) -> str:
        return f"{self.prefix}-{service}-sandbox"

    def image_repository(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    @property
    def labels(self) -> dict[str, str]:
        return {"c2c.project": PROJECT, "c2c.stack": self.stack}

    @property
    def replicated(self) -> bool:
        """True when internal runs as a Swarm service of several replicas (c2c:internalReplicas)."""
        return self.internal_replicas > 1

    @property
    def replica_hosts(self) -> tuple[DockerHost, ...]:
        """Where an internal replica may run, so where its image is built: every host of the
        Swarm (c2c:hosts) when replicated, else internal's one host."""
        if self.replicated:
            return tuple(self.hosts.values())
        return (self.host_of("internal"),)

    @property
    def internal_url(self) -> str:
        # Replicated: the service's name, which Docker's embedded DNS answers with every
        # healthy replica's address (endpoint mode dnsrr); else internal's static IP.
        host = self.container_name("internal") if self.replicated else str(self.internal_ip)
        return f"http://{host}:{self.internal_port}"

    @property
    def endpoint(self) -> str:
        # A wildcard bind is reachable at external's host address (on loopback when that is
        # this machine's default engine); a specific address only on itself.
        if self.host_bind_address.is_unspecified:
            host = self.host_of("external").url_host
        elif self.host_bind_address.version == 6:
            host = f"[{self.host_bind_address}]"
        else:
            host = str(self.host_bind_address)
        return f"http://{host}:{self.host_port}"


def _nproc_needed(workers: int, threads: int, *, internal_replicas: int) -> int:
    """RLIMIT_NPROC estimate for two stacks on one host. It counts every task (threads too) of
    uid 10001 on the host, so all of a stack's containers share it: per container a gunicorn
    master, and per worker its main thread, its request threads and a heartbeat; plus room for
    healthcheck execs. With replicas, all of them may land on external's host."""
    containers = 1 + internal_replicas
    return 2 * (containers * (1 + workers * (threads + 2))) + 16


def _upper_half(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """c2c:overlayIpRange's blank default: the subnet's upper half (172.13.128.0/17 of the
    seed's /16), away from the low static addresses."""
    return list(subnet.subnets(prefixlen_diff=1))[-1]


def _config_type(annotation: Any) -> str:
    if annotation is int:
        return "integer"
    return "object" if get_origin(annotation) is dict else "string"


# Every `c2c:*` key, with the type Pulumi.yaml must declare for it. No floats: the project
# config schema has no float type, so timeouts are whole milliseconds.
CONFIG_TYPES: dict[str, str] = {
    to_camel(name): _config_type(field.annotation)
    for name, field in StackSettings.model_fields.items()
    if name != "stack"
}


# Keys whose Pulumi.yaml default is blank: unset is a meaning of its own (see each key).
OPTIONAL_KEYS: frozenset[str] = frozenset(
    to_camel(name) for name, field in StackSettings.model_fields.items() if not field.is_required()
)


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


def qualified(key: str) -> str:
    return f"{PROJECT}:{key}"


def load_settings(cfg: ConfigReader, stack: str) -> StackSettings:
    """Read and check every key; raise ConfigError listing all problems at once."""
    # A blank value counts as unset; surrounding whitespace is not part of a value.
    raw = {key: value.strip() for key in CONFIG_TYPES if (value := cfg.get(key) or "").strip()}
    try:
        return StackSettings.model_validate({"stack": stack, **raw})
    except ValidationError as err:
        # Stable: within each group, the keys' declaration order.
        errors = sorted(err.errors(), key=lambda error: error["type"] == _RELATION)
        raise ConfigError([_problem(error) for error in errors]) from None


def _problem(error: ErrorDetails) -> tuple[str, str]:
    """One pydantic error as (`c2c:<key>` or `stack '<name>'`, why)."""
    # A blank optional key is validated as its default, under its field name, not its alias.
    key = to_camel(str(error["loc"][0]))
    if error["type"] == "missing":
        reason = MISSING
    elif error["type"] == "value_error":  # a parser's ValueError, without pydantic's prefix
        reason = str(error.get("ctx", {}).get("error", error["msg"]))
    else:  # a relation; the parsers return their field's type, so pydantic adds no problem
        reason = error["msg"]
    return (f"stack {error['input']!r}" if key == "stack" else qualified(key)), reason
