"""The stack's `c2c:*` configuration: one pydantic schema, validated once, frozen.

StackSettings is the one list of what the program reads: each field after `stack` is a config
key (its camelCase alias, e.g. `internalIp`), and its type says how the raw string is parsed and
checked. Pulumi.yaml declares the same keys with type, default and description (a unit test
keeps the two in step). Defaults live only there; the CLI merges them into every stack, so a
key that reaches the program unset is an error, not a silent fallback.

Validation runs before the program declares any resource and reports every bad key at once,
one line each: `c2c:<key>: <why>`. A check that relates keys (an address inside the subnet, the
nproc budget of workers and threads) reads the keys declared before it, and only those that
passed: a bad subnet gives one line, not one more per address. A later key that refers to
earlier ones (say a map of Docker hosts and the host each service runs on) follows the same
pattern: a typed field, and a field validator that looks it up in `info.data`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, get_args

import pulumi
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ValidationInfo

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
        # RLIMIT_NPROC counts every task (threads too) of uid 10001 on the host, so both
        # containers share it: per container a gunicorn master, and per worker its main thread,
        # its request threads and a heartbeat, plus room for healthcheck execs and a second stack.
        needed = 2 * (2 * (1 + workers * (threads + 2))) + 16
        if nproc < needed:
            raise _relation(
                f"{nproc} is below {needed}, the estimate for two stacks of two containers with "
                f"c2c:workers={workers} and c2c:threads={threads}"
            )
        return nproc

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


# Every `c2c:*` key, with the type Pulumi.yaml must declare for it. Integers only: the project
# config schema has no float type, so timeouts are whole milliseconds.
CONFIG_TYPES: dict[str, str] = {
    to_camel(name): "integer" if field.annotation is int else "string"
    for name, field in StackSettings.model_fields.items()
    if name != "stack"
}


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
    key = str(error["loc"][0])
    if error["type"] == "missing":
        reason = MISSING
    elif error["type"] == "value_error":  # a parser's ValueError, without pydantic's prefix
        reason = str(error.get("ctx", {}).get("error", error["msg"]))
    else:  # a relation; the parsers return their field's type, so pydantic adds no problem
        reason = error["msg"]
    return (f"stack {error['input']!r}" if key == "stack" else qualified(key)), reason
