"""One bench run: the lab engine, the Pulumi stack and the compose project on it, every
measurement, and the JSON document (bench.report renders it)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from bench import report
from bench.compose import Compose, compose_env
from bench.machine import load_average, machine
from bench.packages import ensure_packages
from bench.pulumi_cli import PulumiCli
from bench.wrk import WrkReport, parse_wrk, wrk_argv
from lab import OFFLINE_BASE_IMAGE, EngineSpec, Host, Lab
from lab.modern import modern_engine_spec

# Automation API drivers shared with the e2e suite (a throwaway project copy, own backend).
from lab.stacks import Engine, Project, Stack, remove_labelled, stack_filter

DEFAULT_LAB = "bench"
DEFAULT_UNDERLAY = ipaddress.IPv4Network("198.18.3.0/24")
LAB_HOST = "bench"
PULUMI_STACK = "bench"
COMPOSE_STACK = "bench-compose"  # c2c.stack label and name prefix of the compose deployment
ENGINES = ("debian", "current")
HEALTHY_WITHIN_S = 120


@dataclass(frozen=True)
class Options:
    smoke: bool = False
    engine: str = "debian"
    lab: str = DEFAULT_LAB
    underlay: ipaddress.IPv4Network = DEFAULT_UNDERLAY
    keep_lab: bool = False

    @property
    def wrk_seconds(self) -> int:
        return 1 if self.smoke else 5

    @property
    def wrk_rounds(self) -> int:
        return 1 if self.smoke else 3

    @property
    def deploy_runs(self) -> int:
        return 1 if self.smoke else 3


def _log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --- the engine's containers, by c2c labels --------------------------------------------------


def _stack_containers(client: docker.DockerClient, stack: str) -> list[Any]:
    return list(client.containers.list(all=True, filters=stack_filter(stack)))


def _is_ready(container: Any) -> bool:
    state = container.attrs["State"]
    health = (state.get("Health") or {}).get("Status")
    return bool(state.get("Status") == "running" and health in (None, "healthy"))


def wait_until_healthy(client: docker.DockerClient, stack: str) -> int:
    """Poll until the stack has containers and each runs and, if it has a healthcheck, is
    healthy; how many there are."""
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while time.monotonic() < deadline:
        containers = _stack_containers(client, stack)
        if containers and all(_is_ready(c) for c in containers):
            return len(containers)
        time.sleep(0.1)
    states = {c.name: c.attrs["State"] for c in _stack_containers(client, stack)}
    raise RuntimeError(f"{stack}: not every container healthy within {HEALTHY_WITHIN_S}s: {states}")


def _assert_gone(client: docker.DockerClient, stack: str) -> None:
    left = [c.name for c in _stack_containers(client, stack)]
    if left:
        raise RuntimeError(f"{stack}: containers left after destroy/down: {left}")


def _remove_leftovers(client: docker.DockerClient) -> None:
    """What an interrupted run with --keep-lab left of the bench's two deployments (never the
    base image the lab loaded, which carries the project's label too)."""
    for stack in (PULUMI_STACK, COMPOSE_STACK):
        remove_labelled(client, stack_filter(stack))


def image_sizes(client: docker.DockerClient, stack: str, base_id: str) -> dict[str, int]:
    """Bytes of each service's image, found from the stack's containers (not the base's)."""
    sizes = {}
    for container in _stack_containers(client, stack):
        image = container.image
        if image.id != base_id:
            sizes[container.labels["c2c.service"]] = int(image.attrs["Size"])
    return sizes


# --- HTTP ------------------------------------------------------------------------------------


def http_targets(stack: Stack) -> dict[str, str]:
    """Each path's URL as a client in the engine's host namespace reaches it."""
    outputs, settings = stack.outputs, stack.settings()
    port = settings["hostPort"]
    return {
        "internal": f"{outputs['internalUrl']}/",
        "external": f"http://{outputs['externalIp']}:{settings['externalPort']}/",
        # IPv4 loopback: docker-proxy's; the nat rules skip 127/8.
        "loopback": f"http://127.0.0.1:{port}/",
        # The bridge gateway is this host's own address: nat OUTPUT -> DOCKER chain -> DNAT.
        "dnat": f"http://{outputs['gateway']}:{port}/",
    }


def _check_answers(host: Host, url: str) -> None:
    proc = host.run(["curl", "--fail", "--silent", "--show-error", "--max-time", "5", url])
    if proc.returncode != 0:
        raise RuntimeError(f"{url} does not answer 200 from {host.netns}: {proc.stderr.strip()}")


def _wrk(host: Host, url: str, connections: int, seconds: int) -> WrkReport:
    argv = host.command(wrk_argv(url, connections=connections, seconds=seconds))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return parse_wrk(proc.stdout)


def measure_http(host: Host, targets: dict[str, str], opts: Options) -> dict[str, report.PathRuns]:
    """Every path in turn, round after round, so a change of the machine's load hits all."""
    for url in targets.values():
        _check_answers(host, url)
        _wrk(host, url, 50, 1)  # warm-up: connection pools, page cache; not counted
    one: dict[str, list[WrkReport]] = {path: [] for path in targets}
    fifty: dict[str, list[WrkReport]] = {path: [] for path in targets}
    for round_no in range(1, opts.wrk_rounds + 1):
        _log(f"HTTP round {round_no}/{opts.wrk_rounds}")
        for path, url in targets.items():
            one[path].append(_wrk(host, url, 1, opts.wrk_seconds))
        for path, url in targets.items():
            fifty[path].append(_wrk(host, url, 50, opts.wrk_seconds))
    return {path: report.PathRuns(url, one[path], fifty[path]) for path, url in targets.items()}


# --- deploys ---------------------------------------------------------------------------------


def _seconds(action: Callable[[], object]) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


class Deploys:
    """Seconds of each step of each tool, run after run."""

    def __init__(self) -> None:
        self.samples: dict[str, dict[str, list[float]]] = {tool: {} for tool in report.TOOLS}

    def record(self, tool: str, step: str, action: Callable[[], object]) -> None:
        seconds = _seconds(action)
        self.samples[tool].setdefault(step, []).append(seconds)
        _log(f"{tool} {step}: {seconds:.2f} s")


def _pulumi_round(stack: Stack, client: docker.DockerClient, deploys: Deploys) -> None:
    cli = PulumiCli(stack)

    def up() -> None:
        cli.up()
        wait_until_healthy(client, stack.name)

    def noop_up() -> None:
        cli.noop_up()
        wait_until_healthy(client, stack.name)

    deploys.record("pulumi", "up", up)
    deploys.record("pulumi", "noop_up", noop_up)
    deploys.record("pulumi", "preview", cli.preview)
    deploys.record("pulumi", "down", cli.destroy)
    _assert_gone(client, stack.name)


def _compose_round(compose: Compose, client: docker.DockerClient, deploys: Deploys) -> None:
    def up() -> None:
        compose.up()
        wait_until_healthy(client, COMPOSE_STACK)

    deploys.record("compose", "up", up)
    deploys.record("compose", "noop_up", up)
    deploys.record("compose", "down", compose.down)
    _assert_gone(client, COMPOSE_STACK)


# --- the run ---------------------------------------------------------------------------------


@contextmanager
def bench_lab(opts: Options) -> Iterator[Host]:
    spec = modern_engine_spec() if opts.engine == "current" else EngineSpec()
    lab = Lab(
        opts.lab,
        hosts=(LAB_HOST,),
        underlay=opts.underlay,
        base_image=OFFLINE_BASE_IMAGE,
        engine=spec,
    )
    _log(f"lab {opts.lab} ({opts.engine} engine) on {opts.underlay}: up")
    (host,) = lab.up()
    try:
        yield host
    finally:
        if not opts.keep_lab:
            _log(f"lab {opts.lab}: down")
            lab.down()


def run(opts: Options) -> dict[str, Any]:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    start = time.monotonic()
    load_start = load_average()
    ensure_packages()
    workdir = Path(tempfile.mkdtemp(prefix="c2c-bench-"))
    try:
        with bench_lab(opts) as host:
            doc = _measure(host, opts, workdir / "project")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "schema": report.SCHEMA,
        "mode": "smoke" if opts.smoke else "full",
        "started_at": started_at,
        "duration_s": time.monotonic() - start,
        "load_average": {"start": load_start, "end": load_average()},
        **doc,
    }


def _measure(host: Host, opts: Options, workdir: Path) -> dict[str, Any]:
    engine = Engine(kind=opts.engine, docker_host=host.docker_host, netns=host.netns)
    client = engine.docker_client()
    _remove_leftovers(client)
    version = client.version()
    base_id = client.images.get(OFFLINE_BASE_IMAGE).id
    base_bytes = int(client.images.get(base_id).attrs["Size"])
    project = Project(workdir, engine=engine, docker_client=client, base_image=OFFLINE_BASE_IMAGE)
    stack = Stack(project, PULUMI_STACK, {"baseImage": OFFLINE_BASE_IMAGE})
    compose = Compose(
        f"c2c-{COMPOSE_STACK}", host.docker_host, compose_env(stack.settings(), COMPOSE_STACK)
    )
    containers: dict[str, int] = {}
    sizes: dict[str, dict[str, int]] = {}

    # Warm-ups, untimed: they fill the build cache; the first deploy is the one measured over HTTP.
    _log("pulumi up (warm-up), then HTTP")
    stack.up()
    containers["pulumi"] = wait_until_healthy(client, stack.name)
    sizes["pulumi"] = image_sizes(client, stack.name, base_id)
    targets = http_targets(stack)
    http = measure_http(host, targets, opts)
    stack.destroy()
    _log("docker-compose up (warm-up)")
    compose.up()
    containers["compose"] = wait_until_healthy(client, COMPOSE_STACK)
    sizes["compose"] = image_sizes(client, COMPOSE_STACK, base_id)
    _check_answers(host, targets["loopback"])  # same address and port: the compose chain works
    compose.down()

    deploys = Deploys()
    for run_no in range(1, opts.deploy_runs + 1):
        _log(f"deploy run {run_no}/{opts.deploy_runs}")
        # Pulumi and compose in turn, so a change of the machine's load hits both.
        _pulumi_round(stack, client, deploys)
        _compose_round(compose, client, deploys)
    project.workspace.remove_stack(stack.name, force=True)

    return {
        "settings": {
            "wrk_seconds": opts.wrk_seconds,
            "wrk_rounds": opts.wrk_rounds,
            "deploy_runs": opts.deploy_runs,
            "lab": opts.lab,
            "underlay": str(opts.underlay),
        },
        "machine": machine(
            {
                "kind": opts.engine,
                "version": version["Version"],
                "api_version": version["ApiVersion"],
            },
            compose.version(),
        ),
        "containers": containers,
        "http": report.http_rows(http),
        "deploy": report.deploy_rows(deploys.samples),
        "images": {
            "base": OFFLINE_BASE_IMAGE,
            "base_mb": base_bytes / 1e6,
            "services": report.image_rows(sizes, base_bytes),
        },
    }
