"""Command line: `python -m packet_trace [--stack NAME] [--json]` and `... diagram`.

Which engines to ask: the stack file (Pulumi.<stack>.yaml in the current directory, or
--stack-file) when it sets c2c:hosts; otherwise the one engine DOCKER_HOST names, as always.

Exit codes (also in docs/packet-trace.md):
  0  complete: all five parts were read from live state
  1  partial: something could not be read (each problem is printed with what to do)
  2  usage error (bad option, or --via an address that is not this host's)
  3  the stack is not deployed (Docker has no network/containers labelled for it)
  4  Docker is unreachable (whatever else could be read is still printed)
  5  diagram only: Graphviz's `dot` is missing (apt-get install graphviz)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from packet_trace import render
from packet_trace.collect import UsageError, collect
from packet_trace.model import Trace, TraceHost
from packet_trace.multihost import collect_multihost
from packet_trace.sources import (
    HostSources,
    LiveSources,
    Sources,
    engine_netns,
    is_current_netns,
)
from packet_trace.stackfile import StackFileError, StackHosts, default_stack_file, read_stack_file

# (host name, Docker URL) -> that engine's sources, its namespace file and name (None: this one's)
Connect = Callable[[str, str], tuple[HostSources, str | None, str | None]]

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_NOT_DEPLOYED = 3
EXIT_DOCKER = 4
EXIT_NO_DOT = 5


def exit_code(trace: Trace) -> int:
    codes = {p.code for p in trace.problems}
    if "docker-unreachable" in codes:
        return EXIT_DOCKER
    if trace.outputs is None:
        return EXIT_NOT_DEPLOYED
    return EXIT_PARTIAL if codes else EXIT_OK


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        default=os.environ.get("C2C_STACK", "dev"),
        help="stack name, found by the Docker label c2c.stack (default: $C2C_STACK or dev)",
    )
    parser.add_argument(
        "--via",
        default="auto",
        metavar="auto|loopback|gateway|IP",
        help="where the one traced request goes; always an address of this host. auto: the "
        "first of 127.0.0.1 and the stack's gateway that passes the DNAT rule, else 127.0.0.1",
    )
    parser.add_argument(
        "--no-request", action="store_true", help="send nothing; report the static facts only"
    )
    parser.add_argument(
        "--stack-file",
        metavar="FILE",
        help="the stack's config, read for c2c:hosts, c2c:internalHost and c2c:externalHost "
        "(default: Pulumi.<stack>.yaml in the current directory). With hosts, each engine is "
        "asked for the stack's objects and each host's commands run in its engine's network "
        "namespace; the request goes from here to external's host address. Without: the engine "
        "DOCKER_HOST names",
    )


EXIT_CODES_HELP = (
    "exit codes: 0 complete, 1 partial, 2 usage, 3 stack not deployed, "
    "4 Docker unreachable, 5 Graphviz dot missing (diagram)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m packet_trace",
        description="Trace one request through the deployed c2c stack: host port, nat table, "
        "bridge, external -> internal, and a summary, all read from live state. It sends one "
        "GET, only to an address of this host. Run it as root to read the nat table and the "
        "process holding the port; without root it prints what it could read and exits 1. "
        "`python -m packet_trace diagram --help` draws the same facts as SVG and PNG.",
        epilog=EXIT_CODES_HELP,
    )
    _common(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def build_diagram_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m packet_trace diagram",
        description="Write <out>.svg and <out>.png of the stack's topology and request path, "
        "from the same live facts as the trace (needs Graphviz's `dot`).",
        epilog=EXIT_CODES_HELP,
    )
    _common(parser)
    parser.add_argument(
        "--out",
        default="docs/topology",
        help="output path without extension (default: %(default)s)",
    )
    return parser


_VALUED = {"--stack", "--via", "--out", "--stack-file"}


def _subcommand_index(args: list[str]) -> int | None:
    """Where `diagram` stands as a word of its own (not as the value of an option)."""
    for i, arg in enumerate(args):
        if arg == "diagram" and (i == 0 or args[i - 1] not in _VALUED):
            return i
    return None


def live_connect(name: str, url: str) -> tuple[HostSources, str | None, str | None]:
    netns, netns_name = engine_netns(url)
    return LiveSources(url, netns), netns, netns_name


def main(
    argv: list[str] | None = None,
    sources: Sources | None = None,
    connect: Connect | None = None,
) -> int:
    """sources: where the request goes from, and the one engine of a single-host stack;
    connect: how to reach each engine of a multi-host stack."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    at = _subcommand_index(args_list)
    is_diagram = at is not None
    if at is not None:
        del args_list[at]
    parser = build_diagram_parser() if is_diagram else build_parser()
    args = parser.parse_args(args_list)
    stack_file = Path(args.stack_file) if args.stack_file else default_stack_file(args.stack)
    try:
        stack_hosts = read_stack_file(stack_file)
        client = sources or LiveSources()
        if stack_hosts is None:
            trace = collect(client, args.stack, via=args.via, send_request=not args.no_request)
        else:
            trace = _collect_hosts(
                client, connect or live_connect, stack_hosts, args.stack, args.via, args.no_request
            )
    except (UsageError, StackFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if is_diagram:
        return _diagram(trace, Path(args.out))
    code = exit_code(trace)
    if code == EXIT_NOT_DEPLOYED and not args.json:
        # Nothing found to trace: one line saying why and what to do, not five empty parts.
        print(not_deployed_line(trace))
        return code
    print(render.render_json(trace) if args.json else render.render_text(trace))
    return code


def not_deployed_line(trace: Trace) -> str:
    """The whole report of a stack that is not deployed: what is missing, and what to do."""
    why = "; ".join(p.message for p in trace.problems)
    remedies = "; ".join(dict.fromkeys(p.remedy for p in trace.problems))
    return f"stack {trace.stack} is not deployed: {why} -- what to do: {remedies}"


def _collect_hosts(
    client: Sources,
    connect: Connect,
    stack_hosts: StackHosts,
    stack: str,
    via: str,
    no_request: bool,
) -> Trace:
    if via != "auto":
        raise UsageError(
            f"--via: stack {stack} runs on several hosts ({stack_hosts.source}); its request "
            "always goes to external's host address"
        )
    if stack_hosts.internal_host == stack_hosts.external_host:
        only = stack_hosts.hosts[stack_hosts.external_host]
        engine, netns, _ = connect(only.name, str(only.url))
        if netns is None or not is_current_netns(netns):
            where = f"nsenter --net={netns} " if netns else "on that machine: "
            raise UsageError(
                f"both services of {stack} run on host {only.name}, one engine in another "
                f"network namespace: trace it as one host there, `{where}env "
                f"DOCKER_HOST={only.url} python -m packet_trace --stack {stack} --stack-file "
                "/dev/null`"
            )
        return collect(engine, stack, via=via, send_request=not no_request)
    hosts, engines = [], {}
    for name, host in stack_hosts.hosts.items():
        if name not in (stack_hosts.internal_host, stack_hosts.external_host):
            continue  # a host of c2c:hosts that runs neither service
        engines[name], netns, netns_name = connect(name, str(host.url))
        hosts.append(TraceHost(name, host.address, str(host.url), [], netns, netns_name))
    return collect_multihost(
        client, engines, hosts, stack_hosts, stack, send_request=not no_request
    )


def _diagram(trace: Trace, out: Path) -> int:
    import graphviz

    from packet_trace import diagram  # graphviz is needed only here

    code = exit_code(trace)
    if trace.outputs is None:
        print(render.render_text(trace), file=sys.stderr)
        return code
    try:
        written = diagram.write(trace, out)
    except graphviz.ExecutableNotFound:
        print("Graphviz's `dot` is not installed: apt-get install graphviz", file=sys.stderr)
        return EXIT_NO_DOT
    for path in written:
        print(f"wrote {path}")
    for p in trace.problems:
        print(f"problem [{p.hop}] {p.message} -- what to do: {p.remedy}", file=sys.stderr)
    return code
