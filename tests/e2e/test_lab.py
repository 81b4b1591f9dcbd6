"""The simulated-host lab, for real: two hosts with a Swarm, built from nothing and torn down.

Runs as root (namespaces, links, engines). Its lab name, hosts and underlay differ from
`make lab`'s (lab, a/b, 198.18.0.0/24) so a developer's lab and this test never meet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import OFFLINE_BASE_IMAGE, Host, Lab, system
from lab.cli import format_hosts
from lab.naming import RUN_ROOT, STATE_ROOT
from tests.e2e import harness
from tests.e2e.harness import IN_CI, get_text, get_text_when_ready

LAB_NAME = harness.lab_name("tlab")
HOSTS = ("ta", "tb")
UNDERLAY = harness.lab_underlay(9)
WEB_PORT = 8000
REPO = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}


def _lab() -> Lab:
    return Lab(LAB_NAME, hosts=HOSTS, underlay=UNDERLAY, swarm=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "--name", LAB_NAME, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _up_args() -> list[str]:
    return ["up", "--hosts", ",".join(HOSTS), "--underlay", str(UNDERLAY), "--swarm"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        reason = "the lab needs root (namespaces, links, engines)"
        if IN_CI:
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    lab = _lab()
    lab.down()  # leftovers of an interrupted earlier run
    yield lab
    lab.down()
    print("lab timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def hosts(lab: Lab) -> list[Host]:
    t0 = time.monotonic()
    hosts = lab.up()
    TIMINGS["up from nothing"] = time.monotonic() - t0
    return hosts


def test_up_from_nothing_gives_each_host_its_address_engine_and_swarm_role(
    hosts: list[Host],
) -> None:
    assert [h.name for h in hosts] == list(HOSTS)
    assert [h.address for h in hosts] == [UNDERLAY[1], UNDERLAY[2]]
    assert all(h.engine_up and h.pid for h in hosts)
    assert [h.swarm_role for h in hosts] == ["manager", "worker"]
    assert len({h.docker_host for h in hosts}) == len(hosts)


def test_each_engine_has_its_own_hostname_labels_and_namespace(hosts: list[Host]) -> None:
    own_netns = os.stat("/proc/self/ns/net").st_ino
    host_ns_macs = {
        link["address"]
        for link in json.loads(system.run(["ip", "-j", "link", "show"]).stdout)
        if "address" in link
    }
    for host in hosts:
        info = json.loads(host.docker(["info", "--format", "{{json .}}"]).stdout)
        assert info["Name"] == host.name
        assert f"c2c.lab={LAB_NAME}" in info["Labels"]
        assert host.pid is not None
        dockerd_netns = os.stat(f"/proc/{host.pid}/ns/net").st_ino
        assert dockerd_netns == os.stat(host.netns_path).st_ino != own_netns
        # The engine's docker0 lives in the lab host's namespace, not in ours.
        inside = system.links(host.netns)
        assert inside["docker0"].kind == "bridge"
        lab_docker0 = json.loads(host.run(["ip", "-j", "link", "show", "docker0"]).stdout)
        assert lab_docker0[0]["address"] not in host_ns_macs
        # Nothing can leave the machine: no default route inside.
        assert all(r.dst != "default" for r in system.routes(host.netns))


def test_underlay_is_bridged_in_the_host_namespace(lab: Lab, hosts: list[Host]) -> None:
    links = system.links()
    assert links[lab.names.bridge].kind == "bridge"
    for host in hosts:
        assert links[host.veth].master == lab.names.bridge
    assert system.ipv4_addresses(None, lab.names.bridge) == [lab.plan.gateway]


def test_swarm_has_both_hosts(hosts: list[Host]) -> None:
    manager = hosts[0]
    nodes = manager.docker(
        ["node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}"]
    )
    assert sorted(nodes.stdout.split("\n")[:-1]) == ["ta Ready Leader", "tb Ready "]


def test_base_image_is_in_every_engine_with_one_id(hosts: list[Host]) -> None:
    ids = {
        h.docker(["image", "inspect", "--format", "{{.Id}}", OFFLINE_BASE_IMAGE]).stdout.strip()
        for h in hosts
    }
    assert len(ids) == 1
    assert ids.pop().startswith("sha256:")


def test_second_up_changes_nothing_and_prints_the_same(lab: Lab, hosts: list[Host]) -> None:
    rules_before = system.rules_with_comment("filter", lab.names.rule_comment)
    t0 = time.monotonic()
    again = _cli(*_up_args())
    TIMINGS["second up"] = time.monotonic() - t0
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == format_hosts(lab, hosts)
    assert "created" not in again.stderr
    assert "started" not in again.stderr
    after = {h.name: h for h in lab.status_hosts()}
    assert [after[h.name].pid for h in hosts] == [h.pid for h in hosts]
    assert system.rules_with_comment("filter", lab.names.rule_comment) == rules_before
    assert len(rules_before) == 3


def test_published_port_answers_from_the_host_namespace_and_the_other_host(
    hosts: list[Host],
) -> None:
    a, b = hosts
    a.docker(["run", "-d", "--name", "web", "-p", f"{WEB_PORT}:{WEB_PORT}", OFFLINE_BASE_IMAGE,
              "python3", "-m", "http.server", str(WEB_PORT)])  # fmt: skip
    # From the host namespace, over the underlay bridge: DNAT in host a's namespace.
    status, body = get_text_when_ready(f"http://{a.address}:{WEB_PORT}/")
    assert status == 200
    assert "Directory listing" in body
    # From host b's namespace (a socket made there): crosses the bridge between the two.
    assert b.call(lambda: get_text(f"http://{a.address}:{WEB_PORT}/"))[0] == 200
    # Inside host a on loopback: docker-proxy there.
    assert a.call(lambda: get_text(f"http://127.0.0.1:{WEB_PORT}/"))[0] == 200
    # Host b publishes nothing.
    with pytest.raises(urllib.error.URLError):
        get_text(f"http://{b.address}:{WEB_PORT}/")


def test_down_after_an_interrupted_engine_leaves_nothing(lab: Lab, hosts: list[Host]) -> None:
    a = hosts[0]
    assert a.pid is not None
    # An engine killed without cleanup: its containerd, shim, container and mounts stay.
    os.kill(a.pid, signal.SIGKILL)
    system.wait_gone([a.pid], 10)
    t0 = time.monotonic()
    down = _cli("down")
    TIMINGS["down"] = time.monotonic() - t0
    assert down.returncode == 0, down.stderr
    names = lab.names
    assert not [n for n in system.netns_names() if names.host_of_netns(n)]
    links = system.links()
    assert names.bridge not in links
    assert not [n for n in links if names.host_of_veth(n)]
    assert system.rules_with_comment("filter", names.rule_comment) == []
    for host in hosts:
        roots = [names.host_run_dir(host.name), names.data_root(host.name)]
        assert not system.pids_mentioning(roots)
        assert not system.pids_in_cgroup(names.cgroup_parent(host.name))
        assert not [r for r in roots if r.exists()]
    assert not names.run_dir.exists()
    assert not names.state_dir.exists()
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert f"{RUN_ROOT}/{LAB_NAME}/" not in mountinfo
    assert f"{STATE_ROOT}/{LAB_NAME}/" not in mountinfo
    status = json.loads(_cli("status").stdout)
    assert status["hosts"] == []
    assert status["bridge"] is None
