"""Settings of the external service (c2c_http.settings: each field names its variable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from c2c_http.settings import Env, Port, ServerSettings, integer, seconds


def _http_url(raw: str) -> str | None:
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and not parts.query and not parts.fragment and parts.port != 0
    except ValueError:  # a port that is not a number or out of range
        return None
    return raw.rstrip("/") if valid else None


@dataclass(frozen=True, kw_only=True)
class Settings(ServerSettings):
    port: Port = 8081
    internal_url: Annotated[
        str,
        Env(
            "INTERNAL_URL",
            "http(s)://host[:port][/path]",
            _http_url,
            example="http://172.13.0.2:8080",
        ),
    ]
    # A connect across the Docker bridge takes well under 1 ms; a longer wait only delays the 502
    # while internal is gone: (1 + retries) x 0.2 s + 0.2 s backoff stays under 1 s.
    connect_timeout: Annotated[float, seconds("UPSTREAM_CONNECT_TIMEOUT", 0.05, 10.0)] = 0.2
    read_timeout: Annotated[float, seconds("UPSTREAM_READ_TIMEOUT", 0.05, 60.0)] = 3.0
    retries: Annotated[int, integer("UPSTREAM_RETRIES", 0, 10)] = 2
    # The first retry is immediate, then backoff * 2**n seconds, at most upstream.MAX_BACKOFF
    # each: with the defaults, a refused connection fails after about 0.2 s (sleeps 0 + 0.2).
    backoff: Annotated[float, seconds("UPSTREAM_BACKOFF", 0.0, 1.0)] = 0.1
    # 0: a pooled connection serves requests as long as it lives (one peer). N: it is closed
    # after N requests, so the next connection resolves the name again: with several peers
    # behind one DNS name (internal's replicas), requests spread over them.
    max_requests_per_connection: Annotated[
        int, integer("UPSTREAM_MAX_REQUESTS_PER_CONNECTION", 0, 1000)
    ] = 0
