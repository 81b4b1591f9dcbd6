"""A lab of simulated hosts on this machine: each host a network namespace on an underlay bridge,
with a Docker engine of its own; optionally a Swarm over them.

    lab = Lab("lab", hosts=("a", "b"), swarm=True)
    hosts = lab.up()        # idempotent; returns the hosts
    hosts[0].docker_host    # unix:///run/c2c-lab/lab/a/docker.sock
    lab.down()              # removes everything the lab made, found by name

Everything is found on the machine by its name (lab.naming), never from saved state, so `down`
also cleans up after an interrupted `up`.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lab import engine, system
from lab.engine import EngineSpec
from lab.naming import (
    DEFAULT_HOSTS,
    DEFAULT_LAB,
    DEFAULT_UNDERLAY,
    HOST_IFNAME,
    RUN_ROOT,
    STATE_ROOT,
    AddressPlan,
    LabError,
    LabNames,
    check_host_names,
)
from lab.netns import nsenter_argv, run_in_netns
from lab.parse import SwarmState, parse_swarm

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE_SCRIPT = REPO_ROOT / "scripts" / "base-image.sh"
# The offline base that scripts/base-image.sh builds (its FALLBACK_REF; a unit test keeps the
# two equal). It can be imported into any engine from the per-user tarball cache.
OFFLINE_BASE_IMAGE = "c2c-base/python:3.11-bookworm"
SWARM_PORT = 2377


@dataclass(frozen=True)
class Host:
    """One simulated host, as found on the machine."""

    lab: str
    name: str
    netns: str
    address: ipaddress.IPv4Address | None  # on the underlay; None if the namespace has none
    docker_host: str  # unix:// URL of its engine's socket
    pid: int | None  # its dockerd, if running
    data_root: Path
    run_dir: Path
    log_file: Path
    veth: str  # the host-namespace side of its underlay link
    engine_up: bool = False
    swarm_role: str | None = None  # "manager", "worker" or None

    @property
    def netns_path(self) -> Path:
        return LabNames(self.lab).netns_path(self.name)

    @property
    def env(self) -> dict[str, str]:
        """Environment for a docker client (CLI, docker-py, Pulumi provider) of this engine."""
        return {"DOCKER_HOST": self.docker_host}

    def call(self, fn: Callable[[], T], timeout: float | None = 60) -> T:
        """Run `fn()` inside this host's network namespace (sockets it makes live there)."""
        return run_in_netns(self.netns_path, fn, timeout)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run inside this host's network namespace."""
        return nsenter_argv(self.netns_path, argv)

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """subprocess.run of `argv` inside this host's network namespace (text, captured)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("check", False)
        result: subprocess.CompletedProcess[str] = subprocess.run(self.command(argv), **kwargs)
        return result

    def docker(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this host's engine."""
        return engine.docker(LabNames(self.lab), self.name, args, check=check)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "netns": self.netns,
            "address": str(self.address) if self.address else None,
            "docker_host": self.docker_host,
            "pid": self.pid,
            "engine_up": self.engine_up,
            "swarm_role": self.swarm_role,
            "data_root": str(self.data_root),
            "run_dir": str(self.run_dir),
            "log_file": str(self.log_file),
            "veth": self.veth,
        }


@dataclass
class Lab:
    """A named lab. `hosts` (in order: host i gets underlay address i + 1) and `underlay` matter
    to `up`; `down` and `status` find the lab's hosts on the machine by its name."""

    name: str = DEFAULT_LAB
    hosts: Sequence[str] = DEFAULT_HOSTS
    underlay: ipaddress.IPv4Network = DEFAULT_UNDERLAY
    swarm: bool = False
    base_image: str | None = OFFLINE_BASE_IMAGE  # None: load no image
    engine: EngineSpec = field(default_factory=EngineSpec)

    def __post_init__(self) -> None:
        self.names = LabNames(self.name)
        self.hosts = check_host_names(list(self.hosts))
        self.plan = AddressPlan(ipaddress.IPv4Network(self.underlay))
        self.addresses = self.plan.hosts(self.hosts)

    # --- up ------------------------------------------------------------------------------------

    def up(self) -> list[Host]:
        """Create what is missing, leave what is there; returns the lab's hosts."""
        _require_root()
        missing = system.missing_tools(self.engine.path)
        if missing:
            raise LabError(
                f"missing tools: {', '.join(missing)} (Debian: docker.io, iproute2, iptables, "
                "util-linux; scripts/ensure-docker.sh installs Docker)"
            )
        with self._locked():
            self._ensure_bridge()
            self._ensure_firewall()
            for host in self.hosts:
                self._ensure_netns(host)
            self._ensure_engines()
            if self.base_image:
                first = self.hosts[0]
                self._ensure_image(first, self.base_image, source=None)
                # Copies of the first host's image: the same image ID on every host.
                for host in self.hosts[1:]:
                    self._ensure_image(host, self.base_image, source=first)
            if self.swarm:
                self._ensure_swarm()
            found = {h.name: h for h in self.status_hosts()}
            return [found[h] for h in self.hosts]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One up or down of a lab at a time."""
        lock = self.names.lock_file
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _ensure_bridge(self) -> None:
        bridge = self.names.bridge
        link = system.links().get(bridge)
        if link is None:
            system.run(["ip", "link", "add", bridge, "type", "bridge"])
            system.log(f"created bridge {bridge}")
        elif link.kind != "bridge":
            raise LabError(f"{bridge} exists and is not a bridge ({link.kind})")
        self._ensure_address(None, bridge, self.plan.gateway)
        # No IPv6 on the underlay: nothing of the lab needs it, and it keeps the namespaces
        # from sending router solicitations.
        system.run(["sysctl", "-qw", f"net.ipv6.conf.{bridge}.disable_ipv6=1"], check=False)
        system.run(["ip", "link", "set", bridge, "up"])

    def _ensure_address(
        self, netns: str | None, ifname: str, wanted: ipaddress.IPv4Interface
    ) -> None:
        present = system.ipv4_addresses(netns, ifname)
        if wanted in present:
            return
        if present:
            where = f"{ifname} in {netns}" if netns else ifname
            raise LabError(
                f"{where} has {', '.join(map(str, present))}, this lab wants {wanted}: "
                f"run `python -m lab down --name {self.name}` first"
            )
        system.run([*system.ip_argv(netns), "addr", "add", str(wanted), "dev", ifname])

    def _ensure_firewall(self) -> None:
        """Docker on this machine sets bridge-nf-call-iptables=1 and FORWARD policy DROP, which
        drops frames between the namespaces on the bridge; accept them. The host namespace's
        own traffic to the hosts (and their replies) is accepted whatever INPUT/OUTPUT say."""
        bridge, comment = self.names.bridge, ["-m", "comment", "--comment", self.names.rule_comment]
        rules = [
            ("FORWARD", ["-i", bridge, "-o", bridge, *comment, "-j", "ACCEPT"]),
            ("OUTPUT", ["-o", bridge, *comment, "-j", "ACCEPT"]),
            ("INPUT", ["-i", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                       *comment, "-j", "ACCEPT"]),
        ]  # fmt: skip
        for chain, rule in rules:
            if system.ensure_rule("filter", chain, rule):
                system.log(f"added iptables rule: {chain} {' '.join(rule)}")

    def _ensure_netns(self, host: str) -> None:
        netns, veth = self.names.netns(host), self.names.veth(host)
        if netns not in system.netns_names():
            system.run(["ip", "netns", "add", netns])
            system.log(f"created network namespace {netns}")
        inside = system.links(netns)
        outside = system.links()
        if HOST_IFNAME not in inside or veth not in outside:
            # Half-made (interrupted): start the pair over.
            if veth in outside:
                system.run(["ip", "link", "del", veth])
            if HOST_IFNAME in inside:
                system.run(["ip", "-n", netns, "link", "del", HOST_IFNAME])
            system.run(["ip", "link", "add", veth, "type", "veth",
                        "peer", "name", HOST_IFNAME, "netns", netns])  # fmt: skip
            system.log(f"created veth {veth} <-> {netns}:{HOST_IFNAME}")
        if outside.get(veth) is None or outside[veth].master != self.names.bridge:
            system.run(["ip", "link", "set", veth, "master", self.names.bridge])
        system.run(["sysctl", "-qw", f"net.ipv6.conf.{veth}.disable_ipv6=1"], check=False)
        system.run(["ip", "link", "set", veth, "up"])
        self._ensure_address(netns, HOST_IFNAME, self.addresses[host])
        system.run(["ip", "-n", netns, "link", "set", "lo", "up"])
        system.run(["ip", "-n", netns, "link", "set", HOST_IFNAME, "up"])

    def _ensure_engines(self) -> None:
        started = {}
        for host in self.hosts:
            if engine.running_pid(self.names, host) is None:
                started[host] = engine.start(self.names, host, self.engine)
                system.log(f"started dockerd for {host} (pid {started[host]})")
        # Wait for all together: the engines start in parallel.
        for host in self.hosts:
            pid = started.get(host) or engine.running_pid(self.names, host)
            if pid is None:
                raise LabError(f"dockerd of host {host} is not running")
            engine.wait_ready(self.names, host, pid, self.engine.start_timeout)

    def _ensure_image(self, host: str, image: str, source: str | None) -> None:
        """Load `image` into `host`'s engine unless there: from lab host `source`'s engine, else
        the offline base from its recipe, else from the host namespace's engine."""
        names = self.names
        if engine.docker(names, host, ["image", "inspect", image], check=False).returncode == 0:
            return
        t0 = time.monotonic()
        if source is None and image == OFFLINE_BASE_IMAGE:
            # The one recipe: imports the per-user cached rootfs tarball (debootstraps it if
            # missing). No pull: the lab has no route out.
            system.run(
                [str(BASE_IMAGE_SCRIPT), image],
                env={"DOCKER_HOST": names.docker_host(host), "C2C_PULL_TIMEOUT": "0"},
                timeout=1800,
            )
            how = f"imported by {BASE_IMAGE_SCRIPT.name}"
        else:
            from_host = names.docker_host(source) if source else os.environ.get("DOCKER_HOST")
            _copy_image(image, from_host, names.docker_host(host))
            how = f"copied from {source or 'the host engine'}"
        system.log(f"{image} into {host}: {how} in {time.monotonic() - t0:.1f}s")

    def _ensure_swarm(self) -> None:
        manager, *workers = self.hosts
        names = self.names
        state = self._swarm(manager)
        manager_addr = str(self.addresses[manager].ip)
        if state.state != "active":
            listen = f"{manager_addr}:{SWARM_PORT}"
            engine.docker(
                names,
                manager,
                ["swarm", "init", "--advertise-addr", manager_addr, "--listen-addr", listen],
            )
            system.log(f"swarm initialised on {manager} ({manager_addr})")
        elif not state.is_manager:
            raise LabError(f"{manager} is in a swarm but not a manager: run down first")
        token = None
        for worker in workers:
            if self._swarm(worker).state == "active":
                continue
            if token is None:
                token = engine.docker(names, manager, ["swarm", "join-token", "-q", "worker"])
            addr = str(self.addresses[worker].ip)
            join = ["swarm", "join", "--token", token.stdout.strip(), "--advertise-addr", addr]
            join += ["--listen-addr", f"{addr}:{SWARM_PORT}", f"{manager_addr}:{SWARM_PORT}"]
            engine.docker(names, worker, join)
            system.log(f"{worker} joined the swarm as a worker")

    def _swarm(self, host: str) -> SwarmState:
        out = engine.docker(self.names, host, ["info", "--format", "{{json .Swarm}}"]).stdout
        return parse_swarm(out)

    # --- status --------------------------------------------------------------------------------

    def found_hosts(self) -> list[str]:
        """Hosts of this lab that exist in any form: namespace, veth, run or data directory."""
        names = self.names
        found = {h for n in system.netns_names() if (h := names.host_of_netns(n))}
        found |= {h for n in system.links() if (h := names.host_of_veth(n))}
        for directory in (names.run_dir, names.state_dir):
            if directory.is_dir():
                found |= {d.name for d in directory.iterdir() if d.is_dir()}
        order = {h: i for i, h in enumerate(self.hosts)}
        return sorted(found, key=lambda h: (order.get(h, len(order)), h))

    def status_hosts(self) -> list[Host]:
        names = self.names
        namespaces = set(system.netns_names())
        hosts = []
        for host in self.found_hosts():
            netns = names.netns(host)
            address = None
            if netns in namespaces:
                links = system.links(netns)
                if HOST_IFNAME in links:
                    present = system.ipv4_addresses(netns, HOST_IFNAME)
                    address = present[0].ip if present else None
            pid = engine.running_pid(names, host)
            up = pid is not None and engine.answers(names.socket(host))
            role = None
            if up:
                swarm = self._swarm(host)
                if swarm.state == "active":
                    role = "manager" if swarm.is_manager else "worker"
            hosts.append(
                Host(
                    lab=self.name,
                    name=host,
                    netns=netns,
                    address=address,
                    docker_host=names.docker_host(host),
                    pid=pid,
                    data_root=names.data_root(host),
                    run_dir=names.host_run_dir(host),
                    log_file=names.log_file(host),
                    veth=names.veth(host),
                    engine_up=up,
                    swarm_role=role,
                )
            )
        return hosts

    def status(self) -> dict[str, Any]:
        names = self.names
        bridge = system.links().get(names.bridge)
        return {
            "lab": self.name,
            "bridge": names.bridge if bridge else None,
            "bridge_addresses": (
                [str(a) for a in system.ipv4_addresses(None, names.bridge)] if bridge else []
            ),
            "iptables_rules": [
                " ".join(rule) for rule in system.rules_with_comment("filter", names.rule_comment)
            ],
            "hosts": [h.as_dict() for h in self.status_hosts()],
        }

    # --- down ----------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Remove every host of this lab found on the machine, then the bridge, the firewall
        rules and the lab's directories. Returns what was removed, one line each."""
        _require_root()
        removed: list[str] = []
        last = [time.monotonic()]

        def note(what: str) -> None:
            now = time.monotonic()
            system.log(f"removed {what} ({now - last[0]:.1f}s)")
            last[0] = now
            removed.append(what)

        with self._locked():
            hosts = self.found_hosts()
            for host in hosts:
                if count := engine.kill_containers(self.names, host):
                    note(f"{count} containers of {host}")
            for host in engine.stop(self.names, hosts, self.engine.stop_timeout):
                note(f"dockerd of {host}")
            for host in hosts:
                self._remove_host(host, note)
            bridge = self.names.bridge
            if bridge in system.links():
                system.run(["ip", "link", "del", bridge])
                note(f"bridge {bridge}")
            if count := system.delete_rules_with_comment("filter", self.names.rule_comment):
                note(f"{count} iptables rules ({self.names.rule_comment})")
            for directory in (self.names.run_dir, self.names.state_dir):
                system.unmount_below([directory])
                if system.remove_dir(directory):
                    note(f"directory {directory}")
            for root in (RUN_ROOT, STATE_ROOT):
                system.rmdir_if_empty(root)
        return removed

    def _remove_host(self, host: str, note: Callable[[str], None]) -> None:
        names = self.names
        roots = [names.host_run_dir(host), names.data_root(host)]
        # What is left once dockerd stopped, or after an interrupted run: processes in its
        # containers' cgroup, in its namespace (containerd, shims, docker-proxy), or whose
        # command line names its directories.
        # Container processes are killed at once: their engine is gone, and a PID 1 in a
        # container ignores SIGTERM unless it handles it.
        in_containers = system.pids_in_cgroup(names.cgroup_parent(host))
        system.terminate(in_containers, grace=0)
        engine_side = system.pids_in_netns(names.netns_path(host)) | system.pids_mentioning(roots)
        system.terminate(engine_side, grace=5)
        if pids := in_containers | engine_side:
            note(f"{len(pids)} processes of {host}")
        if mounts := system.unmount_below(roots):
            note(f"{mounts} mounts of {host}")
        if names.netns(host) in system.netns_names():
            system.run(["ip", "netns", "del", names.netns(host)])
            note(f"network namespace {names.netns(host)}")
        if names.veth(host) in system.links():
            # Deleting the namespace deletes the pair too, asynchronously: the link may vanish
            # between the check and the delete, so only a link still there is an error.
            deleted = system.run(["ip", "link", "del", names.veth(host)], check=False)
            if deleted.returncode != 0 and names.veth(host) in system.links():
                raise LabError(f"cannot delete veth {names.veth(host)}: {deleted.stderr.strip()}")
            note(f"veth {names.veth(host)}")
        for directory in roots:
            if system.remove_dir(directory):
                note(f"directory {directory}")
        if system.remove_cgroups(names.cgroup_parent(host)):
            note(f"cgroup {names.cgroup_parent(host)}")

    # --- for tests: faults on a running lab ------------------------------------------------------

    def restart_engine(self, host: str) -> Host:
        """Stop `host`'s dockerd (gracefully: its containers stop as on a reboot) and start it
        again with the same configuration; returns the host once its engine answers."""
        _require_root()
        with self._locked():
            engine.stop(self.names, [host], self.engine.stop_timeout)
            pid = engine.start(self.names, host, self.engine)
            engine.wait_ready(self.names, host, pid, self.engine.start_timeout)
        return next(h for h in self.status_hosts() if h.name == host)

    def set_link(self, host: str, up: bool) -> None:
        """Cut `host` off the underlay (up=False) or reconnect it, at its host-side veth."""
        system.run(["ip", "link", "set", self.names.veth(host), "up" if up else "down"])


def _copy_image(image: str, from_docker_host: str | None, to_docker_host: str) -> None:
    """docker save | docker load between two engines (None: the CLI's default engine)."""
    source_env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    if from_docker_host:
        source_env["DOCKER_HOST"] = from_docker_host
    with tempfile.TemporaryFile() as save_err:
        save = subprocess.Popen(
            ["docker", "save", image], stdout=subprocess.PIPE, stderr=save_err, env=source_env
        )
        assert save.stdout is not None
        load = subprocess.run(
            ["docker", "load", "--quiet"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_HOST": to_docker_host},
            check=False,
        )
        save.stdout.close()
        save_failed = save.wait() != 0
        save_err.seek(0)
        save_error = save_err.read().decode(errors="replace").strip()
    if save_failed or load.returncode != 0:
        raise LabError(f"could not copy {image}: {save_error or load.stderr.strip()}")


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab creates namespaces, links and engines: run it as root")


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
