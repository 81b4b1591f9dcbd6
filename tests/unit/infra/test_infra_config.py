"""Stack settings: the defaults, the derived names, and every kind of invalid value."""

from __future__ import annotations

import ipaddress
import json

import pulumi
import pytest

from c2c_infra.config import (
    CONFIG_TYPES,
    OPTIONAL_KEYS,
    ConfigError,
    StackSettings,
    load_settings,
)


class DictConfig:
    """The one method of pulumi.Config the loader uses, over a plain dict."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str) -> str | None:
        return self.values.get(key)


def load(defaults: dict[str, str], stack: str = "dev", **overrides: str) -> StackSettings:
    return load_settings(DictConfig({**defaults, **overrides}), stack)


def rejected(defaults: dict[str, str], stack: str = "dev", **overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(defaults, stack, **overrides)
    return caught.value


def test_defaults_are_the_seed_topology(defaults: dict[str, str]) -> None:
    settings = load(defaults)
    assert settings.subnet == ipaddress.IPv4Network("172.13.0.0/16")
    assert settings.gateway == ipaddress.IPv4Address("172.13.0.1")
    assert settings.internal_ip == ipaddress.IPv4Address("172.13.0.2")
    assert settings.external_ip == ipaddress.IPv4Address("172.13.0.3")
    assert (settings.host_port, settings.external_port, settings.internal_port) == (
        8090,
        8081,
        8080,
    )
    assert settings.base_image == "c2c-base/python:3.11-bookworm"
    assert str(settings.host_bind_address) == "0.0.0.0"
    assert (settings.upstream_connect_timeout_ms, settings.upstream_read_timeout_ms) == (
        200,
        3000,
    )
    assert (settings.restart_policy, settings.restart_max_retries) == ("unless-stopped", 5)
    assert (settings.memory_limit_mb, settings.nproc_limit) == (256, 512)


def test_derived_names_urls_and_labels(defaults: dict[str, str]) -> None:
    settings = load(defaults, stack="e2e-two")
    assert settings.network_name == "c2c-e2e-two-net"
    assert settings.container_name("internal") == "c2c-e2e-two-internal"
    assert settings.image_repository("external") == "c2c-e2e-two-external"
    assert settings.labels == {"c2c.project": "c2c", "c2c.stack": "e2e-two"}
    assert settings.internal_url == "http://172.13.0.2:8080"
    assert settings.endpoint == "http://localhost:8090"


@pytest.mark.parametrize(
    ("bind", "endpoint"),
    [
        ("0.0.0.0", "http://localhost:8090"),
        ("::", "http://localhost:8090"),
        ("127.0.0.1", "http://127.0.0.1:8090"),
        ("::1", "http://[::1]:8090"),
    ],
)
def test_endpoint_follows_the_bind_address(
    defaults: dict[str, str], bind: str, endpoint: str
) -> None:
    assert load(defaults, hostBindAddress=bind).endpoint == endpoint


def test_whitespace_around_values_is_ignored(defaults: dict[str, str]) -> None:
    assert load(defaults, hostPort=" 9000 ").host_port == 9000


# (overrides, the key the first error line must name, a phrase of its reason)
INVALID = [
    ({"subnet": "not-a-cidr"}, "c2c:subnet", "is not a valid CIDR network"),
    ({"subnet": "172.13.0.0/33"}, "c2c:subnet", "is not a valid CIDR network"),
    ({"subnet": "172.13.0.5/16"}, "c2c:subnet", "host bits set"),
    ({"subnet": "fd00:13::/64"}, "c2c:subnet", "is not an IPv4 network"),
    ({"subnet": "172.13.0.0/30"}, "c2c:subnet", "too small"),
    ({"gateway": "172.14.0.1"}, "c2c:gateway", "is outside c2c:subnet 172.13.0.0/16"),
    ({"gateway": "172.13.0.0"}, "c2c:gateway", "network address"),
    ({"gateway": "172.13.255.255"}, "c2c:gateway", "broadcast address"),
    ({"gateway": "gw"}, "c2c:gateway", "is not an IP address"),
    ({"internalIp": "172.14.0.2"}, "c2c:internalIp", "is outside c2c:subnet"),
    ({"internalIp": "172.13.0.0"}, "c2c:internalIp", "network address"),
    ({"internalIp": "172.13.255.255"}, "c2c:internalIp", "broadcast address"),
    ({"internalIp": "172.13.0.1"}, "c2c:internalIp", "equals c2c:gateway"),
    ({"internalIp": "fd00::2"}, "c2c:internalIp", "is not an IPv4 address"),
    ({"externalIp": "10.0.0.3"}, "c2c:externalIp", "is outside c2c:subnet"),
    ({"externalIp": "172.13.0.1"}, "c2c:externalIp", "equals c2c:gateway"),
    ({"externalIp": "172.13.0.2"}, "c2c:externalIp", "equals c2c:internalIp"),
    ({"hostPort": "0"}, "c2c:hostPort", "is outside 1-65535"),
    ({"hostPort": "65536"}, "c2c:hostPort", "is outside 1-65535"),
    ({"hostPort": "-80"}, "c2c:hostPort", "is outside 1-65535"),
    ({"hostPort": "80a"}, "c2c:hostPort", "is not an integer"),
    ({"hostPort": "8090.0"}, "c2c:hostPort", "is not an integer"),
    ({"externalPort": "70000"}, "c2c:externalPort", "is outside 1-65535"),
    ({"internalPort": "0"}, "c2c:internalPort", "is outside 1-65535"),
    ({"hostBindAddress": "localhost"}, "c2c:hostBindAddress", "is not an IP address"),
    ({"baseImage": "python 3.11"}, "c2c:baseImage", "is not an image reference"),
    ({"baseImage": "$(reboot)"}, "c2c:baseImage", "is not an image reference"),
    ({"upstreamConnectTimeoutMs": "0"}, "c2c:upstreamConnectTimeoutMs", "is outside 50-10000"),
    ({"upstreamReadTimeoutMs": "60001"}, "c2c:upstreamReadTimeoutMs", "is outside 50-60000"),
    ({"upstreamReadTimeoutMs": "1.5"}, "c2c:upstreamReadTimeoutMs", "is not an integer"),
    ({"upstreamRetries": "11"}, "c2c:upstreamRetries", "is outside 0-10"),
    ({"workers": "0"}, "c2c:workers", "is outside 1-32"),
    ({"threads": "65"}, "c2c:threads", "is outside 1-64"),
    ({"memoryLimitMb": "16"}, "c2c:memoryLimitMb", "is outside 32-65536"),
    ({"nprocLimit": "31"}, "c2c:nprocLimit", "is outside 32-65536"),
    ({"nprocLimit": "64"}, "c2c:nprocLimit", "is below 68"),
    ({"workers": "32", "threads": "64"}, "c2c:nprocLimit", "c2c:workers=32"),
    ({"restartPolicy": "sometimes"}, "c2c:restartPolicy", "is not one of no, on-failure"),
    ({"restartMaxRetries": "101"}, "c2c:restartMaxRetries", "is outside 0-100"),
    ({"subnet": ""}, "c2c:subnet", "is required but not set"),
    ({"hostPort": "   "}, "c2c:hostPort", "is required but not set"),
]


@pytest.mark.parametrize(("overrides", "key", "phrase"), INVALID)
def test_invalid_value_is_rejected_naming_the_key(
    defaults: dict[str, str], overrides: dict[str, str], key: str, phrase: str
) -> None:
    error = rejected(defaults, **overrides)
    first_line = str(error).splitlines()[0]
    assert first_line.startswith(f"{key}: "), first_line
    assert phrase in first_line
    assert error.keys == [key]


def test_the_message_quotes_the_value_and_the_subnet(defaults: dict[str, str]) -> None:
    error = rejected(defaults, internalIp="172.14.0.2")
    assert str(error) == "c2c:internalIp: 172.14.0.2 is outside c2c:subnet 172.13.0.0/16"


@pytest.mark.parametrize("key", sorted(set(CONFIG_TYPES) - OPTIONAL_KEYS))
def test_a_missing_key_is_rejected_naming_it(defaults: dict[str, str], key: str) -> None:
    values = {name: value for name, value in defaults.items() if name != key}
    with pytest.raises(ConfigError) as caught:
        load_settings(DictConfig(values), "dev")
    assert caught.value.keys == [f"c2c:{key}"]
    reason = "is required but not set (Pulumi.yaml declares its default)"
    assert str(caught.value) == f"c2c:{key}: {reason}"


def test_every_problem_is_reported_in_declaration_order(defaults: dict[str, str]) -> None:
    error = rejected(defaults, hostPort="0", subnet="bad", restartPolicy="maybe")
    assert error.keys == ["c2c:subnet", "c2c:hostPort", "c2c:restartPolicy"]
    assert len(str(error).splitlines()) == 3


def test_problems_between_keys_follow_every_key_s_own_problems(defaults: dict[str, str]) -> None:
    error = rejected(defaults, internalIp="172.14.0.2", hostPort="0", nprocLimit="64")
    assert error.keys == ["c2c:hostPort", "c2c:internalIp", "c2c:nprocLimit"]


def test_addresses_are_not_checked_against_a_subnet_that_failed(defaults: dict[str, str]) -> None:
    # One root cause, one line: no "outside c2c:subnet" noise for every address.
    assert rejected(defaults, subnet="10.0.0.0/33").keys == ["c2c:subnet"]


def test_a_non_default_private_subnet_is_accepted(defaults: dict[str, str]) -> None:
    settings = load(
        defaults,
        subnet="10.213.0.0/29",
        gateway="10.213.0.6",
        internalIp="10.213.0.1",
        externalIp="10.213.0.2",
    )
    assert settings.internal_url == "http://10.213.0.1:8080"


@pytest.mark.parametrize("stack", ["Dev", "dev stack", "-dev", "dev-", "a" * 41, "dev..x"])
def test_a_stack_name_docker_cannot_use_is_rejected(defaults: dict[str, str], stack: str) -> None:
    error = rejected(defaults, stack=stack)
    assert str(error).startswith(f"stack {stack!r}: must be lowercase")


@pytest.mark.parametrize("stack", ["dev", "e2e-1a2b", "team_a.staging", "a" * 40])
def test_usable_stack_names_are_accepted(defaults: dict[str, str], stack: str) -> None:
    assert load(defaults, stack=stack).stack == stack


def test_config_error_is_a_run_error_for_a_clean_cli_message(defaults: dict[str, str]) -> None:
    # The language host prints a RunError as a plain `error:` line, without a traceback.
    assert isinstance(rejected(defaults, hostPort="0"), pulumi.RunError)


# --- hosts: where each service runs ------------------------------------------------------

LAB_HOSTS = {
    "a": {"url": "unix:///run/c2c-lab/lab/a/docker.sock", "address": "198.18.0.1"},
    "b": {"url": "unix:///run/c2c-lab/lab/b/docker.sock", "address": "198.18.0.2"},
}


def on_hosts(hosts: object = LAB_HOSTS, **overrides: str) -> dict[str, str]:
    return {"hosts": json.dumps(hosts), "internalHost": "b", "externalHost": "a", **overrides}


def test_the_optional_keys_are_the_placement_keys() -> None:
    assert {"internalHost", "externalHost", "swarmManager", "overlayIpRange"} == OPTIONAL_KEYS


def test_no_hosts_is_one_engine_through_the_default_provider(defaults: dict[str, str]) -> None:
    settings = load(defaults)
    assert settings.hosts == {}
    for service in ("internal", "external"):
        host = settings.host_of(service)
        assert (host.name, host.url, host.address) == ("default", None, "localhost")
    assert settings.network_driver == "bridge"
    assert settings.swarm_ip_range is None


def test_two_hosts_give_an_overlay_through_external_s_host(defaults: dict[str, str]) -> None:
    settings = load(defaults, **on_hosts())
    assert settings.host_of("internal").name == "b"
    assert settings.host_of("external").url == "unix:///run/c2c-lab/lab/a/docker.sock"
    assert settings.network_driver == "overlay"
    assert settings.network_host.name == "a"
    # Blank: the subnet's upper half, which the seed's .1, .2 and .3 lie outside of.
    assert settings.swarm_ip_range == ipaddress.IPv4Network("172.13.128.0/17")
    assert settings.endpoint == "http://198.18.0.1:8090"


def test_a_named_swarm_manager_and_ip_range_are_used(defaults: dict[str, str]) -> None:
    hosts = {**LAB_HOSTS, "m": "tcp://10.1.0.9:2375"}
    settings = load(defaults, **on_hosts(hosts, swarmManager="m", overlayIpRange="172.13.64.0/18"))
    assert settings.network_host.name == "m"
    assert settings.swarm_ip_range == ipaddress.IPv4Network("172.13.64.0/18")


def test_both_services_on_one_host_keep_the_bridge(defaults: dict[str, str]) -> None:
    settings = load(defaults, **on_hosts(internalHost="a"))
    assert settings.network_driver == "bridge"
    assert settings.network_host.name == "a"
    assert settings.swarm_ip_range is None


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("tcp://10.0.0.7:2376", "10.0.0.7"),
        ("tcp://docker-b.example:2375", "docker-b.example"),
        ("ssh://deploy@10.0.0.8", "10.0.0.8"),
        ("ssh://deploy@[fd00::8]:2222", "fd00::8"),
        ({"url": "tcp://10.0.0.7:2376", "address": "192.0.2.7"}, "192.0.2.7"),
    ],
)
def test_a_host_address_is_the_url_s_host_unless_given(
    defaults: dict[str, str], entry: object, address: str
) -> None:
    settings = load(defaults, **on_hosts({"a": LAB_HOSTS["a"], "b": entry}))
    assert settings.host_of("internal").address == address


def test_an_ipv6_host_address_is_bracketed_in_the_endpoint(defaults: dict[str, str]) -> None:
    hosts = {"a": "ssh://deploy@[fd00::7]", "b": "ssh://deploy@[fd00::8]"}
    assert load(defaults, **on_hosts(hosts)).endpoint == "http://[fd00::7]:8090"


INVALID_PLACEMENT = [
    (on_hosts("a,b"), "c2c:hosts", "is not a map of host name -> Docker URL"),
    (on_hosts(["a"]), "c2c:hosts", "is not a map"),
    (
        on_hosts({"a": "unix:///x.sock", "b": "tcp://h"}),
        "c2c:hosts",
        "host 'a': unix:///x.sock is a local socket: give the host's address",
    ),
    (on_hosts({"A": "tcp://h", "b": "tcp://h"}), "c2c:hosts", "host 'A': a host name is"),
    (
        on_hosts({"default": "tcp://h", "b": "tcp://h"}),
        "c2c:hosts",
        "'default' names the engine DOCKER_HOST",
    ),
    (
        on_hosts({"a": "http://h:80", "b": "tcp://h"}),
        "c2c:hosts",
        "use a unix://, tcp:// or ssh:// URL",
    ),
    (on_hosts({"a": "tcp://h:99999", "b": "tcp://h"}), "c2c:hosts", "has an invalid port"),
    (
        on_hosts({"a": "tcp:///path", "b": "tcp://h"}),
        "c2c:hosts",
        "is not tcp://[user@]host[:port]",
    ),
    (on_hosts({"a": "unix://rel.sock", "b": "tcp://h"}), "c2c:hosts", "absolute socket path"),
    (
        on_hosts({"a": {"url": "tcp://h", "addr": "x"}, "b": "tcp://h"}),
        "c2c:hosts",
        "unknown field 'addr'",
    ),
    (
        on_hosts({"a": {"address": "10.0.0.1"}, "b": "tcp://h"}),
        "c2c:hosts",
        "url (the engine's Docker URL) is required",
    ),
    (
        on_hosts({"a": {"url": "tcp://h", "address": "no spaces"}, "b": "tcp://h"}),
        "c2c:hosts",
        "address 'no spaces' is not an IP address or DNS name",
    ),
    (
        on_hosts({"a": 7, "b": "tcp://h"}),
        "c2c:hosts",
        "7 is neither a Docker URL nor {url, address}",
    ),
    (on_hosts(internalHost="c"), "c2c:internalHost", "'c' is not a host of c2c:hosts (a, b)"),
    (
        on_hosts(externalHost=""),
        "c2c:externalHost",
        "is required when c2c:hosts is set: one of a, b",
    ),
    (on_hosts(swarmManager="z"), "c2c:swarmManager", "'z' is not a host of c2c:hosts"),
    (on_hosts(internalHost="B!"), "c2c:internalHost", "is not a host name"),
    ({"internalHost": "a"}, "c2c:internalHost", "'a' needs c2c:hosts, which is empty"),
    (
        on_hosts(overlayIpRange="10.0.0.0/24"),
        "c2c:overlayIpRange",
        "10.0.0.0/24 is outside c2c:subnet",
    ),
    (
        on_hosts(overlayIpRange="172.13.0.0/24"),
        "c2c:overlayIpRange",
        "holds c2c:gateway 172.13.0.1; Swarm allocates",
    ),
    (on_hosts(overlayIpRange="172.13.9.0/31"), "c2c:overlayIpRange", "too small for Swarm"),
    (on_hosts(overlayIpRange="not-a-range"), "c2c:overlayIpRange", "is not a valid CIDR"),
    (
        on_hosts(internalIp="172.13.200.2"),
        "c2c:overlayIpRange",
        "172.13.128.0/17 holds c2c:internalIp 172.13.200.2",
    ),
]


def assert_one_line_naming(
    defaults: dict[str, str], overrides: dict[str, str], key: str, phrase: str
) -> None:
    """The overrides are refused with exactly one line, about `key`, saying `phrase`."""
    error = rejected(defaults, **overrides)
    assert error.keys == [key]
    assert phrase in str(error)
    assert len(str(error).splitlines()) == 1


@pytest.mark.parametrize(("overrides", "key", "phrase"), INVALID_PLACEMENT)
def test_invalid_placement_is_one_line_naming_the_key(
    defaults: dict[str, str], overrides: dict[str, str], key: str, phrase: str
) -> None:
    assert_one_line_naming(defaults, overrides, key, phrase)


def test_every_bad_host_entry_is_named_on_the_one_line(defaults: dict[str, str]) -> None:
    error = rejected(defaults, **on_hosts({"a": "http://x", "b": "unix:///y"}))
    assert str(error).startswith("c2c:hosts: host 'a': ")
    assert "; host 'b': " in str(error)


def test_the_ip_range_is_not_checked_on_a_bridge(defaults: dict[str, str]) -> None:
    # One host: the overlay's range is unused, so a gateway inside it is no problem.
    settings = load(defaults, gateway="172.13.200.1", **on_hosts(internalHost="a"))
    assert settings.network_driver == "bridge"
