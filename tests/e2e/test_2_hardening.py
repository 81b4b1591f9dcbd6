"""The containers' hardening as Docker reports it (`docker inspect`) and as it acts inside.

The settings come from the Pulumi program (infra/c2c_infra/component.py); the unit tests check
what the program declares, these check what the engine really runs with the default config.
Each service is two containers (docs/zero-downtime.md): the app (gunicorn), checked as the one
container was, and the sandbox that owns the network identity, checked at the end.
"""

from __future__ import annotations

import json
import re
from typing import Any

import docker
import pytest

from c2c_infra.component import SANDBOX_MEMORY_MB, SANDBOX_SYSCTLS
from lab.stacks import REPO_ROOT, Stack
from tests.e2e import harness

SERVICES = ("internal", "external")
UID = 10001
# Checked from inside each container, as its own (non-root) user: what the kernel enforces.
PROBE = r"""
import json, os, resource
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return line.split()[1]
def writable(path):
    try:
        with open(os.path.join(path, ".c2c-probe"), "w") as handle:
            handle.write("x")
        os.remove(os.path.join(path, ".c2c-probe"))
        return True
    except OSError:
        return False
mounts = {f[1]: f[3].split(",") for f in (l.split() for l in open("/proc/mounts"))}
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "cap_eff": status("CapEff"), "cap_bnd": status("CapBnd"),
    "no_new_privs": status("NoNewPrivs"),
    "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
    "root_writable": writable("/"), "app_writable": writable("/app"),
    "tmp_writable": writable("/tmp"), "tmp_options": mounts.get("/tmp"),
    "root_mode": mounts.get("/", ["?"])[0],
}))
"""
# Run as uid 0: root owns / and /app, so only the read-only mount can refuse the write (EROFS),
# not file permissions. Root here has no capabilities either (CapDrop ALL).
ROOT_WRITE_PROBE = r"""
import errno, sys
for path in ("/c2c-probe", "/app/c2c-probe"):
    try:
        open(path, "w").close()
        print("wrote", path)
        sys.exit(1)
    except OSError as err:
        print(path, errno.errorcode[err.errno])
"""


@pytest.fixture(scope="module")
def inspected(
    deployed_stack: Stack, docker_client: docker.DockerClient
) -> dict[str, dict[str, Any]]:
    """Each service's app container, as `docker inspect` shows it."""
    attrs = {}
    for service in SERVICES:
        name = deployed_stack.container(service).name
        # An earlier test may have just replaced a container: wait for its first healthcheck.
        harness.wait_for_health(docker_client, name, within=60)
        attrs[service] = docker_client.containers.get(name).attrs
    return attrs


def _probe(container: Any, label: str, *, root_write_must_exit_0: bool) -> dict[str, Any]:
    """PROBE's answer in `container` (as its user), with ROOT_WRITE_PROBE's lines as uid 0
    under "root_user_writes"."""
    code, output = container.exec_run(["python3", "-c", PROBE])
    assert code == 0, output.decode(errors="replace")
    result: dict[str, Any] = json.loads(output.decode())
    code, output = container.exec_run(["python3", "-c", ROOT_WRITE_PROBE], user="0")
    result["root_user_writes"] = output.decode(errors="replace").split("\n")
    if root_write_must_exit_0:
        assert code == 0, output.decode(errors="replace")
    print(f"{label}: {result}")
    return result


@pytest.fixture(scope="module")
def probed(
    deployed_stack: Stack, inspected: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    return {
        service: _probe(deployed_stack.container(service), service, root_write_must_exit_0=True)
        for service in SERVICES
    }


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_the_unprivileged_user(
    service: str, inspected: dict[str, dict[str, Any]], probed: dict[str, dict[str, Any]]
) -> None:
    assert inspected[service]["Config"]["User"] == f"{UID}:{UID}"
    assert (probed[service]["uid"], probed[service]["gid"]) == (UID, UID)


@pytest.mark.parametrize("service", SERVICES)
def test_root_filesystem_is_read_only_with_a_tmpfs_at_tmp(
    service: str, inspected: dict[str, dict[str, Any]], probed: dict[str, dict[str, Any]]
) -> None:
    host = inspected[service]["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert list(host["Tmpfs"]) == ["/tmp"]
    assert {"noexec", "nosuid", "nodev"} <= set(host["Tmpfs"]["/tmp"].split(","))
    seen = probed[service]
    assert seen["root_mode"] == "ro"
    assert (seen["root_writable"], seen["app_writable"], seen["tmp_writable"]) == (
        False,
        False,
        True,
    )
    assert {"rw", "noexec", "nosuid", "nodev"} <= set(seen["tmp_options"])
    assert seen["root_user_writes"][:2] == ["/c2c-probe EROFS", "/app/c2c-probe EROFS"]


@pytest.mark.parametrize("service", SERVICES)
def test_no_capabilities_and_no_new_privileges(
    service: str, inspected: dict[str, dict[str, Any]], probed: dict[str, dict[str, Any]]
) -> None:
    host = inspected[service]["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert host["Privileged"] is False
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    # What the kernel applies to the server's processes: empty capability sets, NoNewPrivs.
    assert int(probed[service]["cap_eff"], 16) == 0
    assert int(probed[service]["cap_bnd"], 16) == 0
    assert probed[service]["no_new_privs"] == "1"


@pytest.mark.parametrize("service", SERVICES)
def test_memory_and_process_limits_follow_the_config(
    service: str,
    inspected: dict[str, dict[str, Any]],
    probed: dict[str, dict[str, Any]],
    config: dict[str, str],
) -> None:
    host = inspected[service]["HostConfig"]
    assert host["Memory"] == int(config["memoryLimitMb"]) * 1024 * 1024
    nproc = int(config["nprocLimit"])
    # pulumi-docker 5.1.0 cannot set PidsLimit; the program caps processes with RLIMIT_NPROC.
    print(f"{service}: PidsLimit={host.get('PidsLimit')!r} Ulimits={host['Ulimits']}")
    assert host["Ulimits"] == [{"Name": "nproc", "Soft": nproc, "Hard": nproc}]
    assert probed[service]["nproc"] == [nproc, nproc]


@pytest.mark.parametrize("service", SERVICES)
def test_restart_policy_follows_the_config(
    service: str, inspected: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    policy = inspected[service]["HostConfig"]["RestartPolicy"]
    assert policy["Name"] == config["restartPolicy"]
    if config["restartPolicy"] == "on-failure":
        assert policy["MaximumRetryCount"] == int(config["restartMaxRetries"])


def _declared_healthcheck() -> dict[str, int]:
    """The HEALTHCHECK options of services/Dockerfile: durations in ns (as Docker reports
    them), retries as a count."""
    dockerfile = (REPO_ROOT / "services" / "Dockerfile").read_text()
    (line,) = re.findall(r"^HEALTHCHECK (.*)$", dockerfile, re.MULTILINE)
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", line))
    seconds = {key: value for key, value in options.items() if key != "retries"}
    assert all(value.endswith("s") for value in seconds.values()), line
    return {
        **{key: int(value[:-1]) * 10**9 for key, value in seconds.items()},
        "retries": int(options["retries"]),
    }


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_is_declared_and_reports_healthy(
    service: str,
    deployed_stack: Stack,
    inspected: dict[str, dict[str, Any]],
    config: dict[str, str],
) -> None:
    check = inspected[service]["Config"]["Healthcheck"]
    port = config["internalPort" if service == "internal" else "externalPort"]
    # The image's probe asks GET /healthz on 127.0.0.1:$PORT; the stack sets PORT to the
    # configured port, and the probe really follows it (a port nothing listens on fails).
    probe = ["python3", "-m", "c2c_http.probe"]
    assert check["Test"] == ["CMD", *probe]
    assert f"PORT={port}" in inspected[service]["Config"]["Env"]
    container = deployed_stack.container(service)
    code, output = container.exec_run(probe)
    assert code == 0, output.decode(errors="replace")
    code, output = container.exec_run(probe, environment={"PORT": "1"})
    assert code == 1
    assert "127.0.0.1:1" in output.decode(errors="replace")
    declared = _declared_healthcheck()
    assert (check["Interval"], check["Timeout"], check["StartPeriod"], check["Retries"]) == (
        declared["interval"],
        declared["timeout"],
        declared["start-period"],
        declared["retries"],
    )
    health = inspected[service]["State"]["Health"]
    assert health["Status"] == "healthy"
    # The last probe really ran and passed (exit 0), not just a status left over.
    assert health["Log"], "no healthcheck has run"
    assert health["Log"][-1]["ExitCode"] == 0


# --- the sandboxes: the network identity (address, published port, sysctl), hardened too


@pytest.fixture(scope="module")
def sandboxes(deployed_stack: Stack) -> dict[str, dict[str, Any]]:
    """Each service's sandbox, as `docker inspect` shows it."""
    return {service: deployed_stack.sandbox(service).attrs for service in SERVICES}


@pytest.fixture(scope="module")
def sandboxes_probed(deployed_stack: Stack) -> dict[str, dict[str, Any]]:
    """PROBE and ROOT_WRITE_PROBE run in each sandbox (the base image has python3)."""
    # The base image has no /app: only the root filesystem's answer counts there.
    return {
        service: _probe(
            deployed_stack.sandbox(service), f"{service} sandbox", root_write_must_exit_0=False
        )
        for service in SERVICES
    }


def test_apps_have_no_network_of_their_own(
    inspected: dict[str, dict[str, Any]], sandboxes: dict[str, dict[str, Any]]
) -> None:
    for service in SERVICES:
        sandbox_id = sandboxes[service]["Id"]
        assert inspected[service]["HostConfig"]["NetworkMode"] == f"container:{sandbox_id}"
        assert not inspected[service]["HostConfig"]["PortBindings"]
        assert not inspected[service]["HostConfig"].get("Sysctls")


@pytest.mark.parametrize("service", SERVICES)
def test_sandbox_is_hardened_like_the_apps(
    service: str,
    sandboxes: dict[str, dict[str, Any]],
    sandboxes_probed: dict[str, dict[str, Any]],
) -> None:
    config = sandboxes[service]["Config"]
    host = sandboxes[service]["HostConfig"]
    assert config["User"] == f"{UID}:{UID}"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert host["Privileged"] is False
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    limit = SANDBOX_MEMORY_MB * 1024 * 1024
    assert (host["Memory"], host["MemorySwap"]) == (limit, limit)
    seen = sandboxes_probed[service]
    assert (seen["uid"], seen["gid"]) == (UID, UID)
    assert int(seen["cap_eff"], 16) == 0
    assert int(seen["cap_bnd"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert seen["root_mode"] == "ro"
    assert seen["root_writable"] is False
    assert seen["root_user_writes"][0] == "/c2c-probe EROFS"


@pytest.mark.parametrize("service", SERVICES)
def test_sandbox_sets_the_sysctl_in_the_namespace_the_app_shares(
    service: str, deployed_stack: Stack, sandboxes: dict[str, dict[str, Any]]
) -> None:
    assert sandboxes[service]["HostConfig"]["Sysctls"] == SANDBOX_SYSCTLS
    for key, value in SANDBOX_SYSCTLS.items():
        path = "/proc/sys/" + key.replace(".", "/")
        # Read from the app: the value of the namespace it shares with its sandbox.
        code, output = deployed_stack.container(service).exec_run(["cat", path])
        assert code == 0, output.decode(errors="replace")
        assert output.decode().strip() == value
        # Set in that namespace only: the engine's host keeps the kernel's default.
        assert deployed_stack.engine.run("cat", path).stdout.strip() != value


# The published port belongs to the sandboxes (they own the network identity), not the apps.


def test_internal_publishes_no_port(sandboxes: dict[str, dict[str, Any]]) -> None:
    internal = sandboxes["internal"]
    assert not internal["HostConfig"]["PortBindings"]
    assert not any((internal["NetworkSettings"]["Ports"] or {}).values())


def test_external_binds_the_configured_host_address(
    sandboxes: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    bindings = sandboxes["external"]["HostConfig"]["PortBindings"]
    assert bindings == {
        f"{config['externalPort']}/tcp": [
            {"HostIp": config["hostBindAddress"], "HostPort": config["hostPort"]}
        ]
    }
