"""The README's reachability claims, proven by connecting as a user would, not by reading config.

The engine runs in a lab host (a network namespace on an underlay bridge); the host namespace of
this machine is thus another machine on that underlay, which reaches the engine host only at its
underlay address. Here:

- internal's port is refused on the engine host, from that other machine and from inside;
- a stack with c2c:hostBindAddress=127.0.0.1 answers on the engine host's loopback and nowhere
  else: the other machine is refused at the same port.

What a client on another host routed *through* the engine host meets at internal's own IP (and
that external keeps its source address) is proven in test_7_remote_client.py, which owns that
client's namespace. Traffic goes only to the lab host's addresses and, from inside it, loopback.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab import Host, Lab
from lab.stacks import Project, Stack
from tests.e2e import harness

pytestmark = pytest.mark.e2e

# A stack of its own, on a subnet and host port no other stack of the session uses.
LOOPBACK_CONFIG = {
    "hostBindAddress": "127.0.0.1",
    "subnet": "10.79.0.0/24",
    "gateway": "10.79.0.1",
    "internalIp": "10.79.0.20",
    "externalIp": "10.79.0.30",
    "hostPort": "18093",
}


@pytest.fixture(autouse=True)
def _root_only() -> None:
    harness.require_root("connections from and into the engine's network namespace")


def _lab_host(engine_lab: tuple[str, Lab, Host]) -> tuple[Host, str]:
    _, _, host = engine_lab
    assert host.address is not None, f"lab host {host.name} has no underlay address"
    return host, str(host.address)


def test_internal_port_is_refused_on_the_engine_host(
    deployed_stack: Stack, engine_lab: tuple[str, Lab, Host], config: dict[str, str]
) -> None:
    host, address = _lab_host(engine_lab)
    internal_port, host_port = int(config["internalPort"]), int(config["hostPort"])
    # (where the client stands, address, port) -> outcome. The published port beside it proves
    # each client reaches the host at all, so a refusal is about the port, not the path.
    outcomes = {
        (where, target, port): harness.tcp_connect(target, port, netns)
        for where, netns, targets in (
            ("another machine", None, (address,)),
            ("the engine host", host.netns, ("127.0.0.1", address)),
        )
        for target in targets
        for port in (host_port, internal_port)
    }
    print("\n".join(f"{w} -> {t}:{p}: {o}" for (w, t, p), o in outcomes.items()))

    assert outcomes == {
        key: "connected" if key[2] == host_port else "refused" for key in outcomes
    }, "internal publishes no port: nothing may accept its port on the engine host"


@pytest.fixture(scope="module")
def loopback_stack(project: Project) -> Iterator[Stack]:
    """A stack whose host port binds to the engine host's loopback only, deployed."""
    stack = project.stack("lo", **LOOPBACK_CONFIG)
    try:
        stack.up()
        yield stack
    finally:
        stack.tear_down()


def test_loopback_bound_stack_answers_locally_and_refuses_another_machine(
    loopback_stack: Stack, engine_lab: tuple[str, Lab, Host]
) -> None:
    host, address = _lab_host(engine_lab)
    port = int(LOOPBACK_CONFIG["hostPort"])
    assert loopback_stack.outputs["endpoint"] == f"http://127.0.0.1:{port}"

    status, body, _ = loopback_stack.engine.get_json(f"http://127.0.0.1:{port}/")
    from_host_address = harness.tcp_connect(address, port, host.netns)
    from_other_machine = harness.tcp_connect(address, port)
    print(
        f"127.0.0.1:{port} inside the engine host: {status}; {address}:{port} from inside: "
        f"{from_host_address}; from another machine: {from_other_machine}"
    )

    assert status == 200
    assert body["upstream"]["service"] == "internal"
    # Bound to loopback: neither the host's own underlay address nor a neighbour gets in.
    assert from_host_address == "refused"
    assert from_other_machine == "refused"
