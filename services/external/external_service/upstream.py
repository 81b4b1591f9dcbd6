"""The client side of the external service: one pooled keep-alive session to internal.

Retry policy (urllib3): idempotent requests are retried when the connection fails (refused,
reset, dropped keep-alive), with a short exponential backoff, so a restart of internal that
takes a few hundred milliseconds is bridged instead of surfaced. A read timeout is never
retried: internal got the request and is slow, and asking again would only multiply the wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from external_service.settings import Settings

MAX_BACKOFF = 0.5  # seconds, caps each sleep between two attempts


class UpstreamAnswerError(Exception):
    """Internal answered, but not with the JSON object we expect."""


class _RetryConnectionErrors(Retry):
    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if isinstance(error, ReadTimeoutError):
            raise error  # requests turns it into ReadTimeout: 504 after one read timeout
        return super().increment(method, url, response, error, _pool, _stacktrace)


def build_session(settings: Settings) -> requests.Session:
    retry = _RetryConnectionErrors(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,  # dropped connections; read timeouts are refused above
        status=0,
        other=0,
        redirect=0,
        backoff_factor=settings.backoff,
        backoff_max=MAX_BACKOFF,
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,  # idempotent methods only
        raise_on_status=False,
    )
    session = requests.Session()
    session.trust_env = False  # internal is reached directly, never through an HTTP(S)_PROXY
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.threads, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class Upstream:
    session: requests.Session
    base_url: str
    timeout: tuple[float, float]  # (connect, read) seconds, as requests takes them

    @classmethod
    def from_settings(cls, settings: Settings) -> Upstream:
        timeout = (settings.connect_timeout, settings.read_timeout)
        return cls(build_session(settings), settings.internal_url, timeout)

    def identity(self) -> tuple[dict[str, Any], float]:
        """Internal's answer to ``GET /`` and how long it took in milliseconds.

        Raises requests' exceptions (connection, timeout) or UpstreamAnswerError; the app's
        error handlers turn them into 502 or 504.
        """
        started = time.perf_counter()
        response = self.session.get(
            f"{self.base_url}/", timeout=self.timeout, allow_redirects=False
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise UpstreamAnswerError(f"internal answered HTTP {response.status_code}")
        try:
            body = response.json()
        except requests.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise UpstreamAnswerError("internal answered something else than a JSON object")
        return body, elapsed_ms

    def ready(self) -> bool:
        """Whether internal answers its /healthz with 200 right now."""
        try:
            response = self.session.get(
                f"{self.base_url}/healthz", timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException:
            return False
        return response.status_code == 200
