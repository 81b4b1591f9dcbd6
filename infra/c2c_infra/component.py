"""ServicePair: the two services, their images and the network that joins them.

internal  -- static IP on the network, no published port: reachable only from the network.
external  -- static IP on the network, one published port hostPort -> externalPort, and
             INTERNAL_URL pointing at internal's static IP.

Where they run (c2c:hosts, internalHost, externalHost):
* No hosts (the default): one engine, the one DOCKER_HOST names, through the default
  provider; a user-defined bridge. No explicit provider, so existing stacks see no change.
* Hosts: one explicit docker.Provider per host (a child of the component), and every resource
  names the provider of the host it lives on. Each image is built on the engine of the host
  that runs it (the build context is sent to that engine). Both services on one host: a
  bridge there. On two hosts: an attachable Swarm overlay, created through a manager, on
  which each standalone container still takes its static IP; the overlay's ip_range keeps
  Swarm's own allocations away from those IPs.

Replacement rules (why the options below look the way they do):
* Both images build from one context, services/ (one Dockerfile, SERVICE chooses the image).
  An image's tag is a content hash (context_hash) of the parts its build uses: the
  Dockerfile, .dockerignore, common/ and its own service directory. So a code change in one
  service gives a new image name for that service only, a change to common/ for both.
* Each image is a `RemoteImage` with a `build` block: the provider builds it with the classic
  builder (Debian's engine has no buildx) when the resource is created or replaced, and
  `triggers` carry the content hash, because the provider does not diff a build context.
  With `keep_locally=False` the image is removed on destroy or when its tag changes.
* A container runs the image ID (`RemoteImage.image_id`). The provider reads a container's
  image back as that ID, so passing the ID (not the name) keeps a no-change `pulumi up`
  empty, and a rebuild replaces exactly that service's container.
* Containers and the network have fixed names and static IPs, so a replacement must delete
  the old one first (delete_before_replace).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker as docker

from c2c_infra.config import SERVICES, StackSettings
from c2c_infra.context_hash import context_tag
from c2c_infra.hosts import DockerHost

COMPONENT_TYPE = "c2c:index:ServicePair"
SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
# What every image copies besides its own directory services/<service>/ (see the Dockerfile).
COMMON_DIR = "common"

# The uid/gid the Dockerfile creates; set here too so a changed image cannot run as root.
CONTAINER_USER = "10001:10001"
# The only writable path besides /dev/shm (gunicorn's heartbeat dir); never executable.
TMPFS = {"/tmp": "rw,noexec,nosuid,nodev,size=16m"}  # noqa: S108 - a tmpfs mount, not a file
LOG_OPTS = {"max-size": "10m", "max-file": "3"}
# gunicorn's graceful_timeout is 5 s: give it that and some before the engine kills.
DESTROY_GRACE_SECONDS = 10
# `wait` blocks `pulumi up` until the image's healthcheck reports healthy, or fails after this.
WAIT_TIMEOUT_SECONDS = 90


def default_services_dir() -> Path:
    return SERVICES_DIR


@dataclass(frozen=True)
class ServicePairArgs:
    """Inputs of ServicePair: validated settings and the build context of both images."""

    settings: StackSettings
    # Resolved from this file, not the working directory, which the Pulumi CLI chooses.
    services_dir: Path = field(default_factory=default_services_dir)


class ServicePair(pulumi.ComponentResource):
    # What the stack exports, by output name: the one list (the program exports it as is).
    outputs: dict[str, pulumi.Input[str]]

    def __init__(
        self, name: str, args: ServicePairArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._settings = settings = args.settings

        # One per declared host; none at all for the default engine.
        self.providers = {
            host.name: docker.Provider(
                f"{name}-host-{host.name}", host=host.url, opts=pulumi.ResourceOptions(parent=self)
            )
            for host in settings.hosts.values()
        }

        overlay = settings.network_driver == "overlay"
        ip_range = settings.swarm_ip_range
        self.network = docker.Network(
            f"{name}-network",
            name=settings.network_name,
            driver=settings.network_driver,
            # A standalone container (not a Swarm service) may join an overlay only if it is
            # attachable.
            attachable=True if overlay else None,
            ipam_configs=[
                docker.NetworkIpamConfigArgs(
                    subnet=str(settings.subnet),
                    gateway=str(settings.gateway),
                    ip_range=str(ip_range) if ip_range is not None else None,
                )
            ],
            labels=[
                docker.NetworkLabelArgs(label=key, value=value)
                for key, value in sorted(settings.labels.items())
            ],
            opts=self._on(settings.network_host, delete_before_replace=True),
        )

        self.images = {service: self._image(service, args.services_dir) for service in SERVICES}

        self.internal = self._container(
            "internal",
            address=str(settings.internal_ip),
            port=settings.internal_port,
            env={},
            ports=None,
        )
        self.external = self._container(
            "external",
            address=str(settings.external_ip),
            port=settings.external_port,
            env={
                "INTERNAL_URL": settings.internal_url,
                "UPSTREAM_CONNECT_TIMEOUT": _seconds(settings.upstream_connect_timeout_ms),
                "UPSTREAM_READ_TIMEOUT": _seconds(settings.upstream_read_timeout_ms),
                "UPSTREAM_RETRIES": str(settings.upstream_retries),
            },
            ports=[
                docker.ContainerPortArgs(
                    internal=settings.external_port,
                    external=settings.host_port,
                    ip=str(settings.host_bind_address),
                    protocol="tcp",
                )
            ],
            # Up and healthy first: external's readiness depends on it.
            after=[self.internal],
        )

        internal_host, external_host = settings.host_of("internal"), settings.host_of("external")
        self.outputs = {
            "endpoint": settings.endpoint,
            "internalHost": internal_host.name,
            "internalHostAddress": internal_host.address,
            "externalHost": external_host.name,
            "externalHostAddress": external_host.address,
            "networkDriver": self.network.driver,
            "internalIp": str(settings.internal_ip),
            "externalIp": str(settings.external_ip),
            "subnet": str(settings.subnet),
            "gateway": str(settings.gateway),
            "networkName": self.network.name,
            "internalUrl": settings.internal_url,
            "internalImage": self.images["internal"].name,
            "externalImage": self.images["external"].name,
        }
        self.register_outputs(self.outputs)

    def _on(
        self,
        host: DockerHost,
        *,
        depends_on: Sequence[pulumi.Resource] | None = None,
        delete_before_replace: bool | None = None,
    ) -> pulumi.ResourceOptions:
        """Options of a child that lives on `host`: its provider, if the host has one."""
        return pulumi.ResourceOptions(
            parent=self,
            provider=self.providers.get(host.name),
            depends_on=list(depends_on) if depends_on is not None else None,
            delete_before_replace=delete_before_replace,
        )

    def _image(self, service: str, context: Path) -> docker.RemoteImage:
        settings = self._settings
        build_args = {
            "BASE_IMAGE": settings.base_image,
            "C2C_STACK": settings.stack,
            "SERVICE": service,
        }
        # Only what this image uses: another service's files never change its tag.
        tag = context_tag(context, build_args, only=(COMMON_DIR, service))
        return docker.RemoteImage(
            f"{self._name}-{service}-image",
            name=f"{settings.image_repository(service)}:{tag}",
            build=docker.RemoteImageBuildArgs(
                context=str(context),
                dockerfile="Dockerfile",
                build_args=build_args,
                # The classic builder: Debian's engine has no buildx, and no registry is
                # reachable for BuildKit's frontend image.
                use_legacy_builder=True,
                # The build needs nothing from the network: wheels come from the context.
                network_mode="none",
                remove=True,
                force_remove=True,
            ),
            triggers={"context": tag},
            keep_locally=False,
            force_remove=True,
            # Built by the engine that runs it: no registry is needed between hosts.
            opts=self._on(settings.host_of(service)),
        )

    def _container(
        self,
        service: str,
        *,
        address: str,
        port: int,
        env: Mapping[str, str],
        ports: Sequence[docker.ContainerPortArgs] | None,
        after: Sequence[pulumi.Resource] = (),
    ) -> docker.Container:
        settings = self._settings
        name = settings.container_name(service)
        image = self.images[service]
        envs = {
            "PORT": str(port),
            "WEB_CONCURRENCY": str(settings.workers),
            "GUNICORN_THREADS": str(settings.threads),
            **env,
        }
        return docker.Container(
            f"{self._name}-{service}",
            name=name,
            hostname=name,
            image=image.image_id,
            envs=[f"{key}={value}" for key, value in sorted(envs.items())],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=self.network.name, ipv4_address=address)
            ],
            ports=list(ports) if ports is not None else None,
            user=CONTAINER_USER,
            read_only=True,
            tmpfs=dict(TMPFS),
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            memory=settings.memory_limit_mb,
            # Equal to memory: no swap on top of the limit (and the engine reads back exactly
            # this, where an unset value comes back as twice the memory and shows as a diff).
            memory_swap=settings.memory_limit_mb,
            # pulumi-docker 5.1.0 has no pids_limit; RLIMIT_NPROC is the nearest hard cap.
            ulimits=[
                docker.ContainerUlimitArgs(
                    name="nproc", soft=settings.nproc_limit, hard=settings.nproc_limit
                )
            ],
            restart=settings.restart_policy,
            # Docker rejects a retry count with any policy but on-failure.
            max_retry_count=(
                settings.restart_max_retries if settings.restart_policy == "on-failure" else None
            ),
            # No healthcheck here: the image's HEALTHCHECK (services/Dockerfile) is the one
            # probe, and `wait` holds `pulumi up` until it reports healthy.
            wait=True,
            wait_timeout=WAIT_TIMEOUT_SECONDS,
            must_run=True,
            destroy_grace_seconds=DESTROY_GRACE_SECONDS,
            log_driver="json-file",
            log_opts=dict(LOG_OPTS),
            labels=[
                docker.ContainerLabelArgs(label=key, value=value)
                for key, value in sorted({**settings.labels, "c2c.service": service}.items())
            ],
            opts=self._on(
                settings.host_of(service),
                depends_on=[self.network, image, *after],
                delete_before_replace=True,
            ),
        )


def _seconds(milliseconds: int) -> str:
    return str(milliseconds / 1000)
