"""Replay of captured host output: a Sources implementation that reads fixture files.

Fixture folders, each captured by fixtures/capture.sh on this project's Docker host (Docker
20.10.24, iptables 1.8.9 with the nf_tables backend, userland proxy on):

  real-dev/          the Pulumi-deployed `dev` stack: c2c-dev-net 172.13.0.0/16 on
                     br-f1322933b9af, external published on 0.0.0.0:8090 -> 172.13.0.3:8081.
                     Everything: the nat table before and after one request to 127.0.0.1 and one
                     to the gateway 172.13.0.1, the nat table and ss with external stopped
                     (no-rule), iptables-save/nft/ss run as uid 65534 (no privilege).
  standin-loopback/  a hand-made stand-in stack (c2c-tracefixture-net 10.213.0.0/24) with
                     external published on 127.0.0.1:18090 only, a case the dev stack's config
                     does not produce: the DNAT rule then matches `-d 127.0.0.1/32`. Only the
                     files of that case are kept (no no-rule or no-privilege captures). Made
                     before containers carried c2c.service: that label was added to its
                     containers-inspect.json by hand.

ip-addr.json and exec-*.txt (the netlink and container-side facts) were captured by
fixtures/capture-netns.sh in network namespaces rebuilt with the same interface names, ifindexes,
MACs and addresses as that host.

Replay rules: the first nat-table read answers nat-before.txt, the second the nat-after-* file
of wherever the request went. capture.sh does not record the request's duration, so a replayed
request always takes REPLAY_MS.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from packet_trace.sources import CommandResult, DockerUnavailable, HttpResult

FIXTURES = Path(__file__).parent / "fixtures"
REAL = "real-dev"
LOOPBACK_ONLY = "standin-loopback"
REPLAY_MS = 12.5
REFUSED = "ConnectionRefusedError: [Errno 111] Connection refused"


def read(scenario: str, name: str) -> str:
    return (FIXTURES / scenario / name).read_text()


class FixtureSources:
    """Answers every question of the trace from one fixture folder; sends nothing anywhere.

    root: False replays the captures made as uid 65534 (iptables-save, nft and ss).
    iptables_save: False makes iptables-save "not installed", so the trace falls back to nft;
      the nft listing was captured once, so it answers both before and after the request.
    no_rule: the nat table and ss captured while external was stopped; Docker still answers
      with the inspect taken while it ran unless `stopped` says otherwise.
    stopped: container names whose inspect is replayed as Docker shows a stopped container.
    removed: container names Docker no longer lists.
    refuse: the request passes the nat table (its after-capture is used) but is refused, as a
      `make trace` run right after capture.sh restarted external was.
    """

    def __init__(
        self,
        scenario: str = REAL,
        *,
        root: bool = True,
        iptables_save: bool = True,
        no_rule: bool = False,
        stopped: frozenset[str] = frozenset(),
        removed: frozenset[str] = frozenset(),
        refuse: bool = False,
        docker_up: bool = True,
    ) -> None:
        self.dir = FIXTURES / scenario
        self.root = root
        self.iptables_save = iptables_save
        self.no_rule = no_rule
        self.stopped = stopped
        self.removed = removed
        self.refuse = refuse
        self.docker_up = docker_up
        self.requests: list[tuple[str, int]] = []
        self._nat_after = "nat-before.txt"
        self._nat_reads = 0

    def _text(self, name: str) -> str:
        return (self.dir / name).read_text()

    def _docker(self) -> None:
        if not self.docker_up:
            raise DockerUnavailable("Error while fetching server API version: connection refused")

    def _noperm(self, argv: list[str], stem: str) -> CommandResult:
        rc = int(self._text(f"noperm-{stem}.rc"))
        return CommandResult(
            argv, rc, self._text(f"noperm-{stem}.stdout"), self._text(f"noperm-{stem}.stderr")
        )

    # -- Docker --------------------------------------------------------------------------------

    def networks(self, stack: str | None) -> list[dict[str, Any]]:
        self._docker()
        net: dict[str, Any] = json.loads(self._text("network-inspect.json"))[0]
        labels = net.get("Labels") or {}
        if labels.get("c2c.project") != "c2c":
            return []
        return [net] if stack is None or labels.get("c2c.stack") == stack else []

    def containers(self, stack: str) -> list[dict[str, Any]]:
        self._docker()
        found = []
        for doc in json.loads(self._text("containers-inspect.json")):
            labels, name = doc["Config"]["Labels"], doc["Name"].lstrip("/")
            if labels.get("c2c.stack") != stack or name in self.removed:
                continue
            doc = copy.deepcopy(doc)
            if name in self.stopped:
                # As Docker shows a stopped container: no IP; the static one stays in IPAMConfig.
                doc["State"]["Running"] = False
                doc["State"]["Status"] = "exited"
                for net in doc["NetworkSettings"]["Networks"].values():
                    net["IPAddress"] = net["MacAddress"] = ""
            found.append(doc)
        return found

    def container_exec(self, container: str, argv: list[str]) -> CommandResult:
        """Replays `cat /sys/class/net/IF/iflink /sys/class/net/IF/address` in a container."""
        self._docker()
        ifname = argv[1].split("/")[4]
        path = self.dir / f"exec-{container}-{ifname}.txt"
        if not path.exists():
            return CommandResult(argv, 1, "", f"cat: {argv[1]}: No such file or directory")
        return CommandResult(argv, 0, path.read_text(), "")

    def container_top(self, container: str) -> dict[str, Any] | None:
        raise AssertionError(f"no processes captured for {container}: a stack of no sandboxes")

    # -- host ----------------------------------------------------------------------------------

    def in_netns(self, netns_file: str, argv: list[str]) -> CommandResult:
        raise AssertionError(f"nothing captured in {netns_file}: a stack of no sandboxes")

    def ip_addr(self) -> CommandResult:
        return CommandResult(["ip", "-j", "addr", "show"], 0, self._text("ip-addr.json"), "")

    def ss(self) -> CommandResult:
        name = "ss-listen.txt"
        if not self.root:
            name = "ss-listen-noperm.txt"
        elif self.no_rule:
            name = "ss-listen-no-rule.txt"
        return CommandResult(["ss", "-Hltnp"], 0, self._text(name), "")

    def iptables_version(self) -> CommandResult:
        return CommandResult(["iptables", "--version"], 0, self._text("iptables-version.txt"), "")

    def nat_table(self) -> CommandResult:
        argv = ["iptables-save", "-t", "nat", "-c"]
        if not self.iptables_save:
            return CommandResult(argv, 127, "", "iptables-save: command not found")
        if not self.root:
            return self._noperm(argv, "iptables-save")
        if self.no_rule:
            return CommandResult(argv, 0, self._text("nat-no-rule.txt"), "")
        name = "nat-before.txt" if self._nat_reads == 0 else self._nat_after
        self._nat_reads += 1
        return CommandResult(argv, 0, self._text(name), "")

    def nft_nat(self) -> CommandResult:
        argv = ["nft", "list", "table", "ip", "nat"]
        if not self.root:
            return self._noperm(argv, "nft")
        return CommandResult(argv, 0, self._text("nft-nat.txt"), "")

    def http_get(self, ip: str, port: int) -> HttpResult:
        self.requests.append((ip, port))
        if self.no_rule:
            # external was stopped for this capture: nothing listens, no rule forwards.
            return HttpResult(None, "", 0.2, REFUSED)
        # capture.sh sent exactly these two requests; any other address has no capture.
        kind = {"127.0.0.1": "loopback", self._gateway(): "gateway"}[ip]
        self._nat_after = f"nat-after-{kind}.txt"
        if self.refuse:
            return HttpResult(None, "", 0.3, REFUSED)
        if kind == "gateway" and self._text("response-gateway.rc").strip() != "0":
            return HttpResult(None, "", 0.4, self._text("response-gateway.stderr").strip())
        return HttpResult(200, self._text(f"response-{kind}.json"), REPLAY_MS)

    def _gateway(self) -> str:
        net = json.loads(self._text("network-inspect.json"))[0]
        return str(net["IPAM"]["Config"][0]["Gateway"])
