"""Bounded parsing of environment variables, and the settings every service has.

Every value is checked against a bounded range, so that a wrong deployment stops at startup
with one line naming the variable, instead of misbehaving, hanging or retrying forever later.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Self, TypedDict

# ASCII digits only: int() alone would also take "+8", "1_000" or digits of other scripts.
_INTEGER = re.compile(r"[0-9]+")


class SettingsError(ValueError):
    """An environment variable holds a value the service refuses to start with."""


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer in ``env[name]`` (``default`` if unset or blank), within ``low..high``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if _INTEGER.fullmatch(raw) and low <= int(raw) <= high:
        return int(raw)
    raise SettingsError(f"{name}={raw!r}: expected an integer from {low} to {high}")


def env_seconds(
    env: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    """The duration in ``env[name]`` (``default`` if unset or blank), within ``low..high``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    # NaN fails both comparisons, so it is refused here too (and infinity lies out of bounds).
    if low <= value <= high:
        return value
    raise SettingsError(f"{name}={raw!r}: expected a number of seconds from {low} to {high}")


class ServerFields(TypedDict):
    port: int
    workers: int
    threads: int


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """What gunicorn needs from every service. A service's Settings extends this class and
    gives ``port`` its default (keyword-only fields, so required ones may follow)."""

    port: int
    workers: int = 2
    threads: int = 4

    @classmethod
    def server_fields(cls, env: Mapping[str, str]) -> ServerFields:
        return ServerFields(
            port=env_int(env, "PORT", cls._int_default("port"), 1, 65535),
            workers=env_int(env, "WEB_CONCURRENCY", cls._int_default("workers"), 1, 32),
            threads=env_int(env, "GUNICORN_THREADS", cls._int_default("threads"), 1, 64),
        )

    @classmethod
    def _int_default(cls, name: str) -> int:
        (default,) = (field.default for field in fields(cls) if field.name == name)
        if not isinstance(default, int):  # dataclasses.MISSING: the subclass gave none
            raise TypeError(f"{cls.__qualname__}.{name} needs an integer default")
        return default

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """Read once at startup; a service with more settings overrides this."""
        return cls(**cls.server_fields(env))
