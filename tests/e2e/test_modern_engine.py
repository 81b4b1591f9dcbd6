"""The current Docker engine under test (lab.modern), for real: built from the pinned Go modules
(scripts/docker-engine.sh; minutes on a cold cache), run as a one-host lab, asked what it is, and
made to serve a published port to the host namespace.

Runs as root. Its lab name and underlay are its own, so no other lab ever meets it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import docker
import pytest

from lab import OFFLINE_BASE_IMAGE, Host, Lab, system
from lab.modern import (
    api_version_tuple,
    engine_bin_dir,
    modern_engine_spec,
    pinned_versions,
    server_version,
)
from lab.naming import RUN_ROOT, STATE_ROOT
from tests.e2e import harness
from tests.e2e.harness import IN_CI, get_text_when_ready

LAB_NAME = harness.lab_name("tmod")
HOST = "m"
UNDERLAY = harness.lab_underlay(7)
WEB_PORT = 8000
# Current engines speak API 1.5x; Debian's 20.10 CLI speaks 1.41 and must still be served.
CURRENT_API = (1, 50)
DEBIAN_CLI_API = "1.41"


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    if os.geteuid() != 0:
        reason = "the lab needs root (namespaces, links, engines)"
        if IN_CI:
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    return engine_bin_dir()


@pytest.fixture(scope="module")
def lab(bin_dir: Path) -> Iterator[Lab]:
    lab = Lab(LAB_NAME, hosts=(HOST,), underlay=UNDERLAY, engine=modern_engine_spec(bin_dir))
    lab.down()  # leftovers of an interrupted earlier run
    yield lab
    lab.down()  # also when `up` (the host fixture) failed half-way


@pytest.fixture(scope="module")
def host(lab: Lab) -> Host:
    return lab.up()[0]


def test_engine_is_the_pinned_build_with_a_current_api_and_containerd_images(host: Host) -> None:
    pins = pinned_versions()
    reported = server_version(host)
    assert reported.version == pins["MOBY_VERSION"].removeprefix("v")
    assert api_version_tuple(reported.api_version) >= CURRENT_API
    assert reported.components["runc"] == pins["RUNC_VERSION"].removeprefix("v")
    assert "containerd" in reported.components
    assert reported.containerd_image_store, reported


def _client(host: Host, version: str) -> closing[docker.DockerClient]:
    return closing(docker.DockerClient(base_url=host.docker_host, version=version))


def test_clients_of_debian_20_10_api_are_served_older_ones_refused(host: Host) -> None:
    reported = server_version(host)
    assert api_version_tuple(reported.min_api_version) <= api_version_tuple(DEBIAN_CLI_API)
    with _client(host, DEBIAN_CLI_API) as client:
        assert client.version()["Version"] == reported.version
    major, minor = api_version_tuple(reported.min_api_version)
    too_old = pytest.raises(docker.errors.APIError, match="too old")
    with _client(host, f"{major}.{minor - 1}") as client, too_old:
        client.version()
    # docker-py's "auto" settles on the lower of its own newest API and the engine's.
    with _client(host, "auto") as client:
        negotiated = api_version_tuple(client.api.api_version)
    assert api_version_tuple(DEBIAN_CLI_API) < negotiated <= api_version_tuple(reported.api_version)


def test_published_port_answers_from_the_host_namespace(host: Host, bin_dir: Path) -> None:
    host.docker(["run", "-d", "--name", "web", "-p", f"{WEB_PORT}:{WEB_PORT}", OFFLINE_BASE_IMAGE,
                 "python3", "-m", "http.server", str(WEB_PORT)])  # fmt: skip
    status, body = get_text_when_ready(f"http://{host.address}:{WEB_PORT}/")
    assert status == 200
    assert "Directory listing" in body
    # The listening side of the port is this build's docker-proxy, found first on dockerd's PATH.
    proxies = {
        os.readlink(f"/proc/{pid}/exe")
        for pid in system.pids_in_netns(host.netns_path)
        if system.process_name(pid) == "docker-proxy"
    }
    assert proxies == {str(bin_dir / "docker-proxy")}


def test_container_mac_is_not_derived_from_its_ip(host: Host) -> None:
    address, mac = host.docker(
        ["inspect", "web", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} "
         "{{.MacAddress}}{{end}}"]
    ).stdout.split()  # fmt: skip
    # Docker 20.10 gives 02:42 followed by the IPv4 address; current engines a random one.
    from_ip = "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)
    assert mac != from_ip


def test_down_leaves_nothing(lab: Lab, host: Host) -> None:
    lab.down()
    names = lab.names
    assert not [n for n in system.netns_names() if names.host_of_netns(n)]
    links = system.links()
    assert names.bridge not in links
    assert not [n for n in links if names.host_of_veth(n)]
    assert system.rules_with_comment("filter", names.rule_comment) == []
    roots = [names.host_run_dir(HOST), names.data_root(HOST)]
    assert not system.pids_mentioning(roots)
    assert not system.pids_in_cgroup(names.cgroup_parent(HOST))
    assert not names.run_dir.exists()
    assert not names.state_dir.exists()
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert f"{RUN_ROOT}/{LAB_NAME}/" not in mountinfo
    assert f"{STATE_ROOT}/{LAB_NAME}/" not in mountinfo
    assert lab.status_hosts() == []
