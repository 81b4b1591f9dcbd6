"""Run functions of the bash scripts in scripts/ from tests.

Each script only defines its functions when sourced (main runs only when executed), so a test
sources it in a fresh bash and calls one function, or runs the whole script with a fake
`docker` first on PATH.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = REPO_ROOT / "scripts"


def source_and_run(
    script: str,
    snippet: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Source scripts/<script> and run a bash snippet; values go in through env vars."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "$1"; {snippet}', "bash", str(SCRIPTS / script)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_script(
    script: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Execute scripts/<script> as CI would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(SCRIPTS / script), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_lines(stderr: str, script: str) -> list[str]:
    """The `<script>: error: ...` lines the scripts print before exiting non-zero."""
    prefix = f"{script.removesuffix('.sh')}: error: "
    return [line for line in stderr.splitlines() if line.startswith(prefix)]
