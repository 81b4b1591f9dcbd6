"""Settings of the external service, read once from the environment.

Every value is checked against a bounded range (or a URL shape) so that a wrong deployment
stops at startup with one line naming the variable, instead of hanging or retrying forever.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit

from c2c_http.settings import ServerSettings, SettingsError, env_int, env_seconds

__all__ = ["Settings", "SettingsError"]


def _internal_url(env: Mapping[str, str]) -> str:
    raw = env.get("INTERNAL_URL", "").strip()
    if not raw:
        raise SettingsError("INTERNAL_URL is required, e.g. http://172.13.0.2:8080")
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and not parts.query and not parts.fragment and parts.port != 0
    except ValueError:  # a port that is not a number or out of range
        valid = False
    if not valid:
        raise SettingsError(f"INTERNAL_URL={raw!r}: expected http(s)://host[:port][/path]")
    return raw.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class Settings(ServerSettings):
    internal_url: str
    port: int = 8081  # keep equal to the image's default (services/Dockerfile, port-external)
    # A connect across the Docker bridge takes well under 1 ms; a longer wait only delays the 502
    # while internal is gone: (1 + retries) x 0.2 s + 0.2 s backoff stays under 1 s.
    connect_timeout: float = 0.2
    read_timeout: float = 3.0
    retries: int = 2
    # The first retry is immediate, then backoff * 2**n seconds, at most upstream.MAX_BACKOFF
    # each: with the defaults, a refused connection fails after about 0.2 s (sleeps 0 + 0.2).
    backoff: float = 0.1

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        return cls(
            **cls.server_fields(env),
            internal_url=_internal_url(env),
            connect_timeout=env_seconds(
                env, "UPSTREAM_CONNECT_TIMEOUT", cls.connect_timeout, 0.05, 10.0
            ),
            read_timeout=env_seconds(env, "UPSTREAM_READ_TIMEOUT", cls.read_timeout, 0.05, 60.0),
            retries=env_int(env, "UPSTREAM_RETRIES", cls.retries, 0, 10),
            backoff=env_seconds(env, "UPSTREAM_BACKOFF", cls.backoff, 0.0, 1.0),
        )
