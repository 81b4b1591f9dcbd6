"""The client side of the external service: one pooled keep-alive session to internal.

Retry policy (urllib3): idempotent requests are retried when the connection fails (refused,
reset, dropped keep-alive), with a short exponential backoff, so a restart of internal that
takes a few hundred milliseconds is bridged instead of surfaced. A read timeout is never
retried: internal got the request and is slow, and asking again would only multiply the wait.

Connection reuse: a pooled connection is kept as long as it lives, unless
``max_requests_per_connection`` is set: then it is closed after that many requests. Behind one
DNS name with several addresses (internal's Swarm replicas), each new connection resolves the
name again and connects to the first address that answers, so requests spread over the
replicas instead of each worker staying pinned to the one it met first.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self, cast
from weakref import WeakKeyDictionary

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool
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


class _ServedCount:
    """Requests each pooled connection carried on its current socket; says when to retire it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # connection -> (the socket the count is for, requests carried on it)
        self._counts: WeakKeyDictionary[HTTPConnection, tuple[object, int]] = WeakKeyDictionary()

    def done(self, conn: HTTPConnection) -> bool:
        """Count the request `conn` just carried; True when it has carried `limit` of them."""
        sock = conn.sock
        if sock is None:  # closed already (the answer said so, or an error): nothing to count
            self._counts.pop(conn, None)
            return False
        seen, carried = self._counts.get(conn, (None, 0))
        carried = carried + 1 if seen is sock else 1
        if carried >= self.limit:
            self._counts.pop(conn, None)
            return True
        self._counts[conn] = (sock, carried)
        return False


class _RetiringHTTPConnectionPool(HTTPConnectionPool):
    """A pool that closes a connection instead of keeping it once it carried `max_requests`."""

    max_requests: ClassVar[int] = 0  # set per adapter (see _ReuseLimitedAdapter); 0: unlimited

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._served = _ServedCount(self.max_requests)

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, HTTPConnection) and self.max_requests and self._served.done(conn):
            conn.close()  # stays pooled, closed: its next request connects (and resolves) anew
        super()._put_conn(conn)


class _RetiringHTTPSConnectionPool(_RetiringHTTPConnectionPool, HTTPSConnectionPool):
    pass


class _ReuseLimitedAdapter(HTTPAdapter):
    """An HTTPAdapter whose pooled connections each carry at most `max_requests` requests."""

    def __init__(self, max_requests: int, **kwargs: Any) -> None:
        # Read by init_poolmanager, which HTTPAdapter.__init__ calls.
        self._max_requests = max_requests
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        limit = {"max_requests": self._max_requests}
        self.poolmanager.pool_classes_by_scheme = {
            "http": cast(
                type[HTTPConnectionPool],
                type("RetiringHTTPConnectionPool", (_RetiringHTTPConnectionPool,), limit),
            ),
            "https": cast(
                type[HTTPConnectionPool],
                type("RetiringHTTPSConnectionPool", (_RetiringHTTPSConnectionPool,), limit),
            ),
        }


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
    adapter = (
        _ReuseLimitedAdapter(
            settings.max_requests_per_connection,
            pool_connections=1,
            pool_maxsize=settings.threads,
            max_retries=retry,
        )
        if settings.max_requests_per_connection
        # One peer: a connection is kept as long as it lives.
        else HTTPAdapter(pool_connections=1, pool_maxsize=settings.threads, max_retries=retry)
    )
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

    @functools.cached_property
    def _identity_request(self) -> requests.PreparedRequest:
        return self._prepare("/")

    @functools.cached_property
    def _healthz_request(self) -> requests.PreparedRequest:
        return self._prepare("/healthz")

    def identity(self) -> tuple[dict[str, Any], float]:
        """Internal's answer to ``GET /`` and how long it took in milliseconds.

        Raises requests' exceptions (connection, timeout) or UpstreamAnswerError; the app's
        error handlers turn them into 502 or 504.
        """
        started = time.perf_counter()
        response = self._send(self._identity_request)
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
            response = self._send(self._healthz_request)
        except requests.RequestException:
            return False
        return response.status_code == 200

    def _prepare(self, path: str) -> requests.PreparedRequest:
        # Prepared once: the same GET every time, and preparing it (URL parsing, merging the
        # session's headers and settings) cost about a third of requests' own time per call.
        return self.session.prepare_request(requests.Request("GET", f"{self.base_url}{path}"))

    def _send(self, prepared: requests.PreparedRequest) -> requests.Response:
        # A copy per call (microseconds): the response refers to its request, and threads share
        # the prepared one.
        return self.session.send(prepared.copy(), timeout=self.timeout, allow_redirects=False)
