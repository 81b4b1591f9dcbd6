"""Settings of the external service, read once from the environment.

Every value is checked against a bounded range (or a URL shape) so that a wrong deployment
stops at startup with one line naming the variable, instead of hanging or retrying forever.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """An environment variable holds a value the service refuses to start with."""


def _number(env: Mapping[str, str], name: str, default: N, bounds: tuple[N, N]) -> N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    parse: Callable[[str], N] = type(default)
    low, high = bounds
    try:
        value = parse(raw)
    except ValueError:
        value = None
    # NaN fails both comparisons, so it is refused here too.
    if value is None or not low <= value <= high:
        kind = "an integer" if isinstance(default, int) else "a number of seconds"
        raise SettingsError(f"{name}={raw!r}: expected {kind} from {low} to {high}")
    return value


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


@dataclass(frozen=True)
class Settings:
    internal_url: str
    port: int = 8081
    # A connect across the Docker bridge takes well under 1 ms; a longer wait only delays the 502
    # while internal is gone: (1 + retries) x 0.2 s + 0.2 s backoff stays under 1 s.
    connect_timeout: float = 0.2
    read_timeout: float = 3.0
    retries: int = 2
    # The first retry is immediate, then backoff * 2**n seconds, at most upstream.MAX_BACKOFF
    # each: with the defaults, a refused connection fails after about 0.2 s (sleeps 0 + 0.2).
    backoff: float = 0.1
    workers: int = 2
    threads: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            internal_url=_internal_url(env),
            port=_number(env, "PORT", cls.port, (1, 65535)),
            connect_timeout=_number(
                env, "UPSTREAM_CONNECT_TIMEOUT", cls.connect_timeout, (0.05, 10.0)
            ),
            read_timeout=_number(env, "UPSTREAM_READ_TIMEOUT", cls.read_timeout, (0.05, 60.0)),
            retries=_number(env, "UPSTREAM_RETRIES", cls.retries, (0, 10)),
            backoff=_number(env, "UPSTREAM_BACKOFF", cls.backoff, (0.0, 1.0)),
            workers=_number(env, "WEB_CONCURRENCY", cls.workers, (1, 32)),
            threads=_number(env, "GUNICORN_THREADS", cls.threads, (1, 64)),
        )
