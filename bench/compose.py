"""docker compose side of the bench: bench/docker-compose.yml configured from the Pulumi stack's
effective config (`compose_env`, pure), and the docker-compose commands on the bench's engine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from bench.command import run_checked

COMPOSE_FILE = Path(__file__).resolve().parent / "docker-compose.yml"
# The classic builder, as Pulumi's build (use_legacy_builder): the engines have no buildx.
_CLASSIC_BUILD = {"COMPOSE_DOCKER_CLI_BUILD": "0", "DOCKER_BUILDKIT": "0"}


def compose_env(settings: Mapping[str, str], stack: str) -> dict[str, str]:
    """Every ${VAR} of the compose file from a stack's effective `c2c:*` config (bare keys, as
    Pulumi.yaml declares them), the way infra's ServicePair reads the same keys."""
    policy = settings["restartPolicy"]
    retries = settings["restartMaxRetries"]
    return {
        "STACK": stack,
        "BASE_IMAGE": settings["baseImage"],
        "SUBNET": settings["subnet"],
        "GATEWAY": settings["gateway"],
        "INTERNAL_IP": settings["internalIp"],
        "EXTERNAL_IP": settings["externalIp"],
        "INTERNAL_PORT": settings["internalPort"],
        "EXTERNAL_PORT": settings["externalPort"],
        "HOST_PORT": settings["hostPort"],
        "HOST_BIND_ADDRESS": settings["hostBindAddress"],
        "INTERNAL_URL": f"http://{settings['internalIp']}:{settings['internalPort']}",
        "UPSTREAM_CONNECT_TIMEOUT": str(int(settings["upstreamConnectTimeoutMs"]) / 1000),
        "UPSTREAM_READ_TIMEOUT": str(int(settings["upstreamReadTimeoutMs"]) / 1000),
        "UPSTREAM_RETRIES": settings["upstreamRetries"],
        "WORKERS": settings["workers"],
        "THREADS": settings["threads"],
        "MEMORY_LIMIT_MB": settings["memoryLimitMb"],
        "NPROC_LIMIT": settings["nprocLimit"],
        # Docker's spelling of a bounded on-failure policy; a count with any other is refused.
        "RESTART_POLICY": (
            f"on-failure:{retries}" if policy == "on-failure" and int(retries) > 0 else policy
        ),
    }


class Compose:
    """One compose project of bench/docker-compose.yml on one engine."""

    def __init__(self, project: str, docker_host: str, env: Mapping[str, str]) -> None:
        self.project = project
        self.env = {**os.environ, **_CLASSIC_BUILD, "DOCKER_HOST": docker_host, **env}

    def run(self, *args: str, timeout: float = 600) -> None:
        argv = [
            "docker-compose",
            "--project-name",
            self.project,
            "--file",
            str(COMPOSE_FILE),
            *args,
        ]
        run_checked(argv, env=self.env, timeout=timeout)

    def up(self) -> None:
        self.run("up", "--detach")

    def down(self) -> None:
        # --rmi local: the images compose built, as Pulumi's destroy removes its own
        # (keep_locally=False); the base image has a name of its own and stays.
        self.run("down", "--rmi", "local", "--volumes")

    def version(self) -> str:
        proc = subprocess.run(
            ["docker-compose", "version", "--short"], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip() or "unknown"
