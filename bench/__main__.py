"""`python -m bench [--smoke] [--engine current]`: run the bench (root), print the table and
write the JSON; `--show FILE` prints the table of a stored run."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from pathlib import Path

from bench import report
from bench.run import DEFAULT_LAB, DEFAULT_UNDERLAY, ENGINES, Options, run

DEFAULT_OUT = Path(".state/bench.json")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="1 run each, 1 s wrk runs (CI)")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="debian",
        help="the lab engine: Debian's dockerd (default) or the current one (lab.modern)",
    )
    parser.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name (default {DEFAULT_LAB})")
    parser.add_argument(
        "--underlay",
        type=ipaddress.IPv4Network,
        default=DEFAULT_UNDERLAY,
        help=f"lab underlay (default {DEFAULT_UNDERLAY})",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON (default {DEFAULT_OUT})"
    )
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab engine running")
    parser.add_argument(
        "--show", type=Path, metavar="FILE", help="print the table of FILE, run nothing"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.show:
        print(report.render_table(json.loads(args.show.read_text())))
        return 0
    if os.geteuid() != 0:
        print("the bench runs a Docker engine in a network namespace of its own: run it as root")
        return 2
    doc = run(
        Options(
            smoke=args.smoke,
            engine=args.engine,
            lab=args.lab,
            underlay=args.underlay,
            keep_lab=args.keep_lab,
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".tmp")
    partial.write_text(json.dumps(doc, indent=2) + "\n")
    partial.replace(args.out)
    print(report.render_table(doc))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
