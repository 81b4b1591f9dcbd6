"""The Pulumi CLI commands users type, on a bench stack: what the deploy timings measure.

The e2e suite drives stacks through the Automation API (lab.stacks), which wraps each command in
calls of its own (`stack output` twice and `stack history` after an up: ~0.7 s on the bench VM)
that no user waits for. The bench times the commands `make up` and `make down` run instead,
with the same project copy, backend and environment as the stack's workspace.
"""

from __future__ import annotations

import os

from bench.command import run_checked
from lab.stacks import Stack


class PulumiCli:
    """`pulumi <command> --stack <name>` in a stack's project copy."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.env = {**os.environ, **stack.project.workspace.env_vars}

    def run(self, *args: str, timeout: float = 900) -> None:
        argv = ["pulumi", *args, "--stack", self.stack.name, "--non-interactive"]
        run_checked(argv, env=self.env, timeout=timeout, cwd=self.stack.workdir)

    def up(self) -> None:
        self.run("up", "--yes", "--skip-preview")  # as scripts/up.sh

    def noop_up(self) -> None:
        self.run("up", "--yes", "--skip-preview", "--expect-no-changes")

    def preview(self) -> None:
        self.run("preview", "--expect-no-changes")

    def destroy(self) -> None:
        self.run("destroy", "--yes", "--skip-preview")  # as scripts/down.sh
