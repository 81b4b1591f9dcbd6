"""Command line: `python -m packet_trace [--stack NAME] [--json]` and `... diagram`.

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
from pathlib import Path

from packet_trace import render
from packet_trace.collect import UsageError, collect
from packet_trace.model import Trace
from packet_trace.sources import LiveSources, Sources

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


_VALUED = {"--stack", "--via", "--out"}


def _subcommand_index(args: list[str]) -> int | None:
    """Where `diagram` stands as a word of its own (not as the value of an option)."""
    for i, arg in enumerate(args):
        if arg == "diagram" and (i == 0 or args[i - 1] not in _VALUED):
            return i
    return None


def main(argv: list[str] | None = None, sources: Sources | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    at = _subcommand_index(args_list)
    is_diagram = at is not None
    if at is not None:
        del args_list[at]
    parser = build_diagram_parser() if is_diagram else build_parser()
    args = parser.parse_args(args_list)
    try:
        trace = collect(
            sources or LiveSources(), args.stack, via=args.via, send_request=not args.no_request
        )
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if is_diagram:
        return _diagram(trace, Path(args.out))
    print(render.render_json(trace) if args.json else render.render_text(trace))
    return exit_code(trace)


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
