"""Which Docker hosts a stack runs on: `c2c:hosts`, `c2c:internalHost` and `c2c:externalHost` of
its stack file (Pulumi.<stack>.yaml), parsed by the Pulumi program's own parser (infra's
c2c_infra.hosts), so the trace and `pulumi up` cannot read the same file differently.

No file, or a file without hosts, is a single-host stack: the engine DOCKER_HOST names, as
before. Docker labels still say which containers belong to the stack; the file only says which
engines to ask.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from c2c_infra.hosts import DockerHost

INFRA_DIR = Path(__file__).resolve().parents[1] / "infra"
KEY_PREFIX = "c2c:"


class StackFileError(ValueError):
    """A stack file the trace cannot use (not YAML, or bad c2c:hosts)."""


@dataclass(frozen=True)
class StackHosts:
    source: str  # the file read
    hosts: dict[str, DockerHost]
    internal_host: str
    external_host: str


def default_stack_file(stack: str) -> Path:
    return Path(f"Pulumi.{stack}.yaml")


def parse_stack_file(text: str, source: str) -> StackHosts | None:
    """The hosts of a multi-host stack from its stack file's text; None for a single-host one."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise StackFileError(f"{source} is not YAML: {exc}") from None
    config: dict[str, Any] = document.get("config") or {} if isinstance(document, dict) else {}
    raw_hosts = config.get(f"{KEY_PREFIX}hosts")
    if not raw_hosts:
        return None
    try:
        hosts = _parse_hosts(raw_hosts)
    except ValueError as exc:
        raise StackFileError(f"{source}: c2c:hosts: {exc}") from None
    chosen = {}
    for key in ("internalHost", "externalHost"):
        name = config.get(f"{KEY_PREFIX}{key}")
        if name not in hosts:
            raise StackFileError(
                f"{source}: c2c:{key} is {name!r}, not one of c2c:hosts ({', '.join(hosts)})"
            )
        chosen[key] = str(name)
    return StackHosts(source, hosts, chosen["internalHost"], chosen["externalHost"])


def read_stack_file(path: Path) -> StackHosts | None:
    """parse_stack_file of a file; None when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StackFileError(f"cannot read {path}: {exc}") from None
    return parse_stack_file(text, str(path))


def _parse_hosts(raw: Any) -> dict[str, DockerHost]:
    # The Pulumi program's package lives in infra/, which is not on sys.path outside pulumi.
    if str(INFRA_DIR) not in sys.path:
        sys.path.append(str(INFRA_DIR))
    from c2c_infra.hosts import parse_hosts

    return parse_hosts(raw)
