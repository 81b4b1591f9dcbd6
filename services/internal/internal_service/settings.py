"""Settings of the internal service, read once from the environment.

Every value has a bounded default, so a typo in a deployment fails at startup with the
variable's name instead of misbehaving later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """An environment variable holds a value the service refuses to start with."""


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer in ``env[name]`` (or ``default``), which must lie in ``low..high``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.isdecimal() and low <= int(raw) <= high:
        return int(raw)
    raise SettingsError(f"{name}={raw!r}: expected an integer from {low} to {high}")


@dataclass(frozen=True)
class Settings:
    port: int = 8080
    workers: int = 2
    threads: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            port=env_int(env, "PORT", cls.port, 1, 65535),
            workers=env_int(env, "WEB_CONCURRENCY", cls.workers, 1, 32),
            threads=env_int(env, "GUNICORN_THREADS", cls.threads, 1, 64),
        )
