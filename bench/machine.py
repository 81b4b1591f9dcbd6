"""What the bench ran on: CPU, cores, kernel, tool and engine versions, load average."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.wrk import wrk_version


def cpu_model(cpuinfo: str) -> str:
    """The first `model name` of /proc/cpuinfo's text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _first_line(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine(engine: dict[str, Any], compose_version: str) -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(Path("/proc/cpuinfo").read_text()),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "engine": engine,
        "pulumi": "pulumi " + _first_line(["pulumi", "version"]),
        "docker_compose": compose_version,
        "wrk": wrk_version(_first_line(["wrk", "-v"])),
        "python": platform.python_version(),
    }
