"""Record and replay what a multi-host trace reads: every answer of every engine and host.

Recording runs the real trace against a live two-host deployment, through sources that write each
call and its answer to calls.json (run as root, from the directory holding the stack file):

    python -m tests.unit.trace.multihost_fixtures record --stack multihost OUTDIR

Fixture folders (recorded on a lab of `python -m lab up --hosts a,b --swarm`, underlay
198.18.10.0/24 and 198.18.11.0/24, the stack configured like Pulumi.multihost.yaml):

  real-multihost-docker-20.10/    Debian's docker.io 20.10.24
  real-multihost-docker-current/  the current engine (moby v2.0.0-beta.24)
  real-replicas-same-host-docker-20.10/, real-replicas-other-host-docker-20.10/
      stack ntr with c2c:internalReplicas 3 on Debian's docker.io 20.10 (underlay 198.18.14.0/24;
      the stack file keeps this folder's usual name): two runs, the request answered by the
      replica beside external on a, and by one on b
  real-sandbox-docker-20.10/, real-sandbox-redeploy-docker-20.10/,
  real-sandbox-internal-app-stopped-docker-20.10/
      one host (a lab of `--hosts h`, underlay 198.18.15.0/24), stack ptr in sandboxes
      (docs/zero-downtime.md; 10.215.0.0/24, host port 18095, its stack file without c2c:hosts,
      stored under the usual name): steady; in the middle of a redeploy of internal (two apps);
      and with internal's app container stopped (`docker stop`). The recorder works for a
      single-host stack as it is: the trace then reads everything through the client's sources

Each holds calls.json and the stack file the trace read. Replay answers each (host, call,
arguments) with the recorded answers in order (the last one again once they run out), so the
nat table and the counting rules read before the request differ from those read after it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from packet_trace import cli
from packet_trace.sources import (
    CommandResult,
    DockerUnavailable,
    HostSources,
    HttpResult,
    LiveSources,
)

FIXTURES = Path(__file__).parent / "fixtures"
DEB = "real-multihost-docker-20.10"
CURRENT = "real-multihost-docker-current"
STACK_FILE = "Pulumi.multihost.yaml"
CLIENT = "client"  # the "host" of the calls made from the trace's own namespace


def _encode(value: Any) -> Any:
    if isinstance(value, CommandResult):
        return {"command_result": asdict(value)}
    if isinstance(value, HttpResult):
        return {"http_result": asdict(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "command_result" in value:
        return CommandResult(**value["command_result"])
    if isinstance(value, dict) and "http_result" in value:
        return HttpResult(**value["http_result"])
    return value


class _Calls:
    """The recorded calls of one fixture folder."""

    def __init__(self, scenario: str) -> None:
        self.dir = FIXTURES / scenario
        self.calls: list[dict[str, Any]] = json.loads((self.dir / "calls.json").read_text())

    def answers(self, host: str, method: str, args: list[Any]) -> list[Any]:
        return [
            _decode(c["answer"])
            for c in self.calls
            if (c["host"], c["method"], c["args"]) == (host, method, args)
        ]

    def stdout(self, host: str, argv: list[str], method: str = "in_netns") -> str:
        """The first recorded output of a command (for the parsers' tests)."""
        for c in self.calls:
            if c["host"] == host and c["method"] == method and c["args"][-1] == argv:
                return str(c["answer"]["command_result"]["stdout"])
        raise KeyError(f"no {argv} recorded on {host}")


class ReplaySources:
    """One host's (or the client's) recorded answers. Every call is appended to `log`.

    docker_up: False makes this engine unreachable; overrides: (method, first arg) -> a
    CommandResult answered instead of the recording (e.g. a command that fails)."""

    def __init__(
        self,
        calls: _Calls,
        host: str,
        log: list[tuple[str, str, list[Any]]],
        docker_up: bool = True,
        overrides: dict[tuple[str, str], Any] | None = None,
    ) -> None:
        self._calls, self._host, self.log = calls, host, log
        self._seen: dict[str, int] = defaultdict(int)
        self._docker_up = docker_up
        self._overrides = overrides or {}

    def _answer(self, method: str, *args: Any) -> Any:
        plain = [list(a) if isinstance(a, tuple) else a for a in args]
        self.log.append((self._host, method, plain))
        first = plain[-1][0] if plain and isinstance(plain[-1], list) else ""
        if (method, first) in self._overrides:
            return self._overrides[(method, first)]
        answers = self._calls.answers(self._host, method, plain)
        if not answers:
            raise AssertionError(f"nothing recorded for {self._host} {method} {plain}")
        key = json.dumps([method, plain])
        index = min(self._seen[key], len(answers) - 1)
        self._seen[key] += 1
        return answers[index]

    def _docker(self, method: str, *args: Any) -> Any:
        if not self._docker_up:
            raise DockerUnavailable("Error while fetching server API version: connection refused")
        return self._answer(method, *args)

    def networks(self, stack: str | None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._docker("networks", stack)
        return found

    def containers(self, stack: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._docker("containers", stack)
        return found

    def container_exec(self, container: str, argv: list[str]) -> CommandResult:
        result: CommandResult = self._docker("container_exec", container, argv)
        return result

    def container_top(self, container: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._docker("container_top", container)
        return found

    def network(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._docker("network", name)
        return found

    def ip_addr(self) -> CommandResult:
        result: CommandResult = self._answer("ip_addr")
        return result

    def ss(self) -> CommandResult:
        result: CommandResult = self._answer("ss")
        return result

    def iptables_version(self) -> CommandResult:
        result: CommandResult = self._answer("iptables_version")
        return result

    def nat_table(self) -> CommandResult:
        result: CommandResult = self._answer("nat_table")
        return result

    def nft_nat(self) -> CommandResult:
        result: CommandResult = self._answer("nft_nat")
        return result

    def command(self, argv: list[str]) -> CommandResult:
        result: CommandResult = self._answer("command", argv)
        return result

    def netns_files(self, directory: str) -> list[str] | None:
        found: list[str] | None = self._answer("netns_files", directory)
        return found

    def in_netns(self, netns_file: str, argv: list[str]) -> CommandResult:
        result: CommandResult = self._answer("in_netns", netns_file, argv)
        return result

    def http_get(self, ip: str, port: int) -> HttpResult:
        result: HttpResult = self._answer("http_get", ip, port)
        return result


class Replay:
    """Everything a recorded run read, ready for cli.main or collect_multihost."""

    def __init__(
        self,
        scenario: str,
        down: frozenset[str] = frozenset(),
        overrides: dict[str, dict[tuple[str, str], Any]] | None = None,
    ) -> None:
        self.calls = _Calls(scenario)
        self.log: list[tuple[str, str, list[Any]]] = []
        self.stack_file = self.calls.dir / STACK_FILE
        self.hosts: dict[str, dict[str, Any]] = {
            c["args"][0]: c["answer"] for c in self.calls.calls if c["method"] == "connect"
        }
        self.client = ReplaySources(self.calls, CLIENT, self.log)
        self.engines = {
            name: ReplaySources(
                self.calls, name, self.log, name not in down, (overrides or {}).get(name)
            )
            for name in self.hosts
        }

    def connect(self, name: str, url: str) -> tuple[HostSources, str | None, str | None]:
        found = self.hosts[name]
        assert found["url"] == url, (found, url)
        return self.engines[name], found["netns"], found["netns_name"]

    def requests(self) -> list[list[Any]]:
        return [args for host, method, args in self.log if method == "http_get"]

    def commands(self, host: str) -> list[list[str]]:
        return [args[0] for h, method, args in self.log if h == host and method == "command"]


# ---------------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------------


class _Recorder:
    """Wraps LiveSources: each call goes through, and is written down with its answer."""

    def __init__(self, inner: LiveSources, host: str, calls: list[dict[str, Any]]) -> None:
        self._inner, self._host, self._calls = inner, host, calls

    def __getattr__(self, method: str) -> Any:
        real = getattr(self._inner, method)

        def call(*args: Any) -> Any:
            answer = real(*args)
            self._calls.append(
                {
                    "host": self._host,
                    "method": method,
                    "args": list(args),
                    "answer": _encode(answer),
                }
            )
            return answer

        return call


def record(stack: str, stack_file: Path, out: Path) -> int:
    calls: list[dict[str, Any]] = []

    def connect(name: str, url: str) -> tuple[HostSources, str | None, str | None]:
        sources, netns, netns_name = cli.live_connect(name, url)
        assert isinstance(sources, LiveSources)
        calls.append(
            {
                "host": CLIENT,
                "method": "connect",
                "args": [name, url],
                "answer": {"url": url, "netns": netns, "netns_name": netns_name},
            }
        )
        recorder: HostSources = _Recorder(sources, name, calls)
        return recorder, netns, netns_name

    client: Any = _Recorder(LiveSources(), CLIENT, calls)
    argv = ["--stack", stack, "--stack-file", str(stack_file)]
    code = cli.main(argv, sources=client, connect=connect)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calls.json").write_text(json.dumps(calls, indent=1) + "\n")
    (out / STACK_FILE).write_text(stack_file.read_text())
    print(f"recorded {len(calls)} calls into {out} (trace exit code {code})", file=sys.stderr)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.unit.trace.multihost_fixtures")
    sub = parser.add_subparsers(dest="action", required=True)
    rec = sub.add_parser("record", help="run the trace live and write what it read")
    rec.add_argument("--stack", default="multihost")
    rec.add_argument("--stack-file", type=Path)
    rec.add_argument("out", type=Path)
    args = parser.parse_args()
    stack_file = args.stack_file or Path(f"Pulumi.{args.stack}.yaml")
    return record(args.stack, stack_file, args.out)


if __name__ == "__main__":
    sys.exit(main())
