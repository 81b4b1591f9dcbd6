"""Replay of captured host output: a Sources implementation that reads fixture files.

Fixture folders (captured by fixtures/capture.sh from a stand-in stack on Docker 20.10, iptables
nf_tables backend, userland proxy on):
  standin-loopback/  external published on 127.0.0.1:18090
  standin-allif/     external published on 0.0.0.0:18090
Each holds the nat table before and after one request to 127.0.0.1 and one to the gateway, the
nat table and ss with external stopped (no-rule), and iptables-save/nft/ss run as uid 65534
(no privilege).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packet_trace.parse import (
    ContainerLink,
    HostLink,
    parse_container_links,
    parse_host_links,
)
from packet_trace.sources import CommandResult, DockerUnavailable, HttpResult

FIXTURES = Path(__file__).parent / "fixtures"


def read(scenario: str, name: str) -> str:
    return (FIXTURES / scenario / name).read_text()


class FixtureSources:
    """Answers every question of the trace from one fixture folder; sends nothing anywhere.

    mode: "root" (default), "noperm" (commands as uid 65534), "no-rule" (external stopped),
    "nft-only" (no iptables-save: the nft listing, captured once, answers before and after).
    """

    def __init__(
        self,
        scenario: str,
        mode: str = "root",
        docker_up: bool = True,
        outputs: str | None = None,
    ) -> None:
        self.dir = FIXTURES / scenario
        self.mode = mode
        self.docker_up = docker_up
        self.outputs = outputs
        self.requests: list[tuple[str, int]] = []
        self._nat_after = "nat-before.txt"
        self._nat_reads = 0

    def _text(self, name: str) -> str:
        return (self.dir / name).read_text()

    def _docker(self) -> None:
        if not self.docker_up:
            raise DockerUnavailable("Error while fetching server API version: connection refused")

    # -- outputs and Docker --------------------------------------------------------------------

    def pulumi_outputs(self, stack: str) -> CommandResult | None:
        if self.outputs is None:
            return None
        return CommandResult(["pulumi", "stack", "output", "--json"], 0, self.outputs, "")

    def network(self, name: str) -> dict[str, Any] | None:
        self._docker()
        net: dict[str, Any] = json.loads(self._text("network-inspect.json"))[0]
        return net if net["Name"] == name else None

    def networks_by_label(self, stack: str | None) -> list[dict[str, Any]]:
        self._docker()
        net: dict[str, Any] = json.loads(self._text("network-inspect.json"))[0]
        labels = net.get("Labels") or {}
        if labels.get("c2c.project") != "c2c":
            return []
        return [net] if stack is None or labels.get("c2c.stack") == stack else []

    def container(self, name: str) -> dict[str, Any] | None:
        self._docker()
        for doc in json.loads(self._text("containers-inspect.json")):
            if doc["Name"].lstrip("/") == name:
                found: dict[str, Any] = doc
                return found
        return None

    def container_links(self, container: str, ifnames: list[str]) -> list[ContainerLink]:
        self._docker()
        links = parse_container_links(self._text("container-links.txt"))
        return [c for c in links if c.container == container and c.ifname in ifnames]

    # -- host ----------------------------------------------------------------------------------

    def host_links(self) -> list[HostLink]:
        return parse_host_links(self._text("host-links.txt"))

    def ss(self) -> CommandResult:
        name = {"noperm": "ss-listen-noperm.txt", "no-rule": "ss-listen-no-rule.txt"}.get(
            self.mode, "ss-listen.txt"
        )
        return CommandResult(["ss", "-Hltnp"], 0, self._text(name), "")

    def ip_addr(self) -> CommandResult:
        return CommandResult(["ip", "-o", "addr"], 0, self._text("ip-addr.txt"), "")

    def iptables_version(self) -> CommandResult:
        return CommandResult(["iptables", "--version"], 0, self._text("iptables-version.txt"), "")

    def nat_table(self) -> CommandResult:
        argv = ["iptables-save", "-t", "nat", "-c"]
        if self.mode == "noperm":
            rc = int(self._text("noperm-iptables-save.rc"))
            return CommandResult(argv, rc, "", self._text("noperm-iptables-save.stderr"))
        if self.mode == "no-rule":
            return CommandResult(argv, 0, self._text("nat-no-rule.txt"), "")
        if self.mode == "nft-only":
            return CommandResult(argv, 127, "", "iptables-save: command not found")
        # First read: before the request; second: after it, matching where it went.
        name = "nat-before.txt" if self._nat_reads == 0 else self._nat_after
        self._nat_reads += 1
        return CommandResult(argv, 0, self._text(name), "")

    def nft_nat(self) -> CommandResult:
        return CommandResult(
            ["nft", "list", "table", "ip", "nat"], 0, self._text("nft-nat.txt"), ""
        )

    def http_get(self, ip: str, port: int, path: str = "/") -> HttpResult:
        self.requests.append((ip, port))
        if self.mode == "no-rule":
            # external was stopped for this capture: nothing listens, no rule forwards.
            return HttpResult(
                None, "", 0.2, "ConnectionRefusedError: [Errno 111] Connection refused"
            )
        kind = "loopback" if ip == "127.0.0.1" else "gateway"
        self._nat_after = f"nat-after-{kind}.txt"
        body = self._text(f"response-{kind}.json")
        if kind == "gateway" and self._text("response-gateway.rc").strip() != "0":
            return HttpResult(None, "", 0.4, self._text("response-gateway.stderr").strip())
        return HttpResult(200, body, 12.5)
