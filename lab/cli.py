"""Command line: `python -m lab up|down|status`. Progress goes to stderr; stdout carries the
result (the hosts after `up`, JSON for `status`), identical on a repeated `up`."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

from lab.core import OFFLINE_BASE_IMAGE, Host, Lab, dumps
from lab.engine import EngineSpec
from lab.naming import DEFAULT_HOSTS, DEFAULT_LAB, DEFAULT_UNDERLAY, LabError, parse_host_list


def _host_list(text: str) -> tuple[str, ...]:
    try:
        return parse_host_list(text)
    except LabError as exc:  # argparse reports only its own error types as usage errors
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description="Simulated hosts: a network namespace with its own Docker engine each, "
        "on an underlay bridge. Run as root.",
    )
    parser.add_argument(
        "--name", default=DEFAULT_LAB, help=f"lab name, 1-6 of [a-z0-9] (default {DEFAULT_LAB})"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create what is missing (idempotent) and print the hosts")
    up.add_argument(
        "--hosts",
        type=_host_list,
        default=DEFAULT_HOSTS,
        help=f"comma-separated host names, in address order (default {','.join(DEFAULT_HOSTS)})",
    )
    up.add_argument(
        "--underlay",
        type=ipaddress.IPv4Network,
        default=DEFAULT_UNDERLAY,
        help=f"underlay network inside 198.18.0.0/15 (default {DEFAULT_UNDERLAY})",
    )
    up.add_argument("--swarm", action="store_true", help="first host Swarm manager, others workers")
    up.add_argument(
        "--base-image",
        default=OFFLINE_BASE_IMAGE,
        help=f"image to load into each engine (default {OFFLINE_BASE_IMAGE}; '' for none)",
    )
    up.add_argument("--dockerd", default="dockerd", help="dockerd binary (default: from PATH)")
    up.add_argument(
        "--path",
        action="append",
        default=[],
        help="directory put first on dockerd's PATH (runc, docker-proxy, containerd); repeatable",
    )
    sub.add_parser("down", help="remove everything of the lab, found by its name")
    sub.add_parser("status", help="print the lab as found on the machine (JSON)")
    return parser


def format_hosts(lab: Lab, hosts: Sequence[Host]) -> str:
    lines = [f"lab {lab.name}: bridge {lab.names.bridge} {lab.plan.gateway}"]
    for host in hosts:
        role = f"  swarm {host.swarm_role}" if host.swarm_role else ""
        lines.append(
            f"  {host.name:<5} {host.address!s:<15} DOCKER_HOST={host.docker_host}"
            f"  netns {host.netns}{role}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            lab = Lab(
                name=args.name,
                hosts=args.hosts,
                underlay=args.underlay,
                swarm=args.swarm,
                base_image=args.base_image or None,
                engine=EngineSpec(dockerd=args.dockerd, path=tuple(args.path)),
            )
            print(format_hosts(lab, lab.up()))
        elif args.command == "down":
            Lab(name=args.name).down()
        else:
            print(dumps(Lab(name=args.name).status()))
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    return 0
