"""external's connection reuse towards internal: kept while it lives with one peer, retired
after UPSTREAM_MAX_REQUESTS_PER_CONNECTION requests with several (internal's replicas).

The peers are real HTTP servers on loopback. A name with several addresses, as Docker's
embedded DNS gives for a service in endpoint mode dnsrr, is played by a resolver that answers
every lookup of REPLICAS_NAME with the stand-ins' addresses, rotated one step per lookup
(Docker shuffles them).
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from c2c_http.settings import SettingsError
from external_service.app import create_app
from external_service.settings import Settings
from tests.support.http_stub import StartStub, StubUpstream, free_port

REPLICAS_NAME = "c2c-test-internal"
Resolver = Callable[..., list[Any]]


def make_client(url: str, **overrides: Any) -> FlaskClient:
    return create_app(Settings(internal_url=url, **overrides)).test_client()


def rotating_resolver(ports: list[int], real: Resolver) -> tuple[Resolver, list[int]]:
    """getaddrinfo answering REPLICAS_NAME with 127.0.0.1 at each of `ports` (one address per
    replica), rotated per lookup; other names go to the real one. Also returns the lookups'
    count, one entry per lookup."""
    lookups: list[int] = []
    offsets = itertools.count()

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != REPLICAS_NAME:
            return real(host, port, *args, **kwargs)
        lookups.append(1)
        shift = next(offsets) % len(ports)
        order = ports[shift:] + ports[:shift]
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", p))
            for p in order
        ]

    return resolve, lookups


def test_by_default_one_connection_serves_every_request(stub_upstream: StartStub) -> None:
    stub = stub_upstream()
    client = make_client(stub.url)
    for _ in range(5):
        assert client.get("/").status_code == 200
    assert len(set(stub.client_ports)) == 1


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_connection_carries_at_most_the_limit_then_a_new_one_is_opened(
    stub_upstream: StartStub, limit: int
) -> None:
    stub = stub_upstream()
    client = make_client(stub.url, max_requests_per_connection=limit)
    for _ in range(7):
        assert client.get("/").status_code == 200
    # Successive requests on one connection, `limit` at a time, then the next connection.
    runs = [len(list(group)) for _, group in itertools.groupby(stub.client_ports)]
    assert runs == [limit] * (7 // limit) + ([7 % limit] if 7 % limit else [])
    assert len(set(stub.client_ports)) == len(runs)


def _replicas(stub_upstream: StartStub, count: int) -> list[StubUpstream]:
    return [stub_upstream() for _ in range(count)]


def test_several_peers_behind_one_name_each_get_requests(
    stub_upstream: StartStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    replicas = _replicas(stub_upstream, 3)
    resolve, lookups = rotating_resolver([r.port for r in replicas], socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    client = make_client(f"http://{REPLICAS_NAME}:80", max_requests_per_connection=2)
    for _ in range(12):
        assert client.get("/").status_code == 200
    # The name is resolved again for each new connection, every 2 requests.
    assert len(lookups) == 6
    assert [len(r.paths) for r in replicas] == [4, 4, 4]


def test_without_a_limit_the_first_peer_met_gets_everything(
    stub_upstream: StartStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    replicas = _replicas(stub_upstream, 3)
    resolve, lookups = rotating_resolver([r.port for r in replicas], socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    client = make_client(f"http://{REPLICAS_NAME}:80")
    for _ in range(12):
        assert client.get("/").status_code == 200
    assert len(lookups) == 1
    assert sorted(len(r.paths) for r in replicas) == [0, 0, 12]


def test_a_gone_peer_costs_no_request(
    stub_upstream: StartStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One address of the name refuses (a killed replica still in the DNS answer): a new
    # connection goes on to the next address, so every request is answered.
    live = _replicas(stub_upstream, 2)
    gone = free_port()
    resolve, _ = rotating_resolver([gone, *(r.port for r in live)], socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    client = make_client(f"http://{REPLICAS_NAME}:80", max_requests_per_connection=1)
    statuses = [client.get("/").status_code for _ in range(9)]
    assert statuses == [200] * 9
    assert all(r.paths for r in live)


def test_with_a_limit_a_refused_call_still_gets_its_bounded_retries() -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", max_requests_per_connection=1)
    response = client.get("/")
    assert response.status_code == 502
    assert response.json is not None
    assert response.json["error"] == "upstream_unreachable"


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("1", 1), ("1000", 1000)])
def test_the_limit_is_read_from_the_environment(raw: str, value: int) -> None:
    env = {"INTERNAL_URL": "http://x:1", "UPSTREAM_MAX_REQUESTS_PER_CONNECTION": raw}
    assert Settings.from_env(env).max_requests_per_connection == value


@pytest.mark.parametrize("raw", ["-1", "1001", "2.5", "many"])
def test_an_unbounded_limit_is_refused(raw: str) -> None:
    env = {"INTERNAL_URL": "http://x:1", "UPSTREAM_MAX_REQUESTS_PER_CONNECTION": raw}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert caught.value.problems == [
        f"UPSTREAM_MAX_REQUESTS_PER_CONNECTION={raw!r}: expected an integer from 0 to 1000"
    ]
