"""ServicePair: the two services, their images and the network that joins them.

internal  -- static IP on the network, no published port: reachable only from the network.
external  -- static IP on the network, one published port hostPort -> externalPort, and
             INTERNAL_URL pointing at internal's static IP.

Each service is two containers (docs/zero-downtime.md), as a Kubernetes pod is:
* a sandbox, c2c-<stack>-<service>-sandbox: it owns the network identity (the static IP, the
  published port, net.ipv4.tcp_migrate_req=1 in its namespace) and only sleeps; long-lived;
* the app, c2c-<stack>-<service>-<digest>: gunicorn in the sandbox's network namespace
  (network_mode container:<sandbox id>), so replacing it leaves the IP and the port alone.
On an overlay each service is one container, c2c-<stack>-<service>, that owns its address:
an engine restarting would not start an app after its sandbox there (StackSettings.sandboxed).

Where they run (c2c:hosts, internalHost, externalHost):
* No hosts (the default): one engine, the one DOCKER_HOST names, through the default
  provider; a user-defined bridge. No explicit provider, so existing stacks see no change.
* Hosts: one explicit docker.Provider per host (a child of the component), and every resource
  names the provider of the host it lives on. Each image is built on the engine of the host
  that runs it (the build context is sent to that engine). Both services on one host: a
  bridge there. On two hosts: an attachable Swarm overlay, created through a manager, on
  which each standalone container still takes its static IP; the overlay's ip_range keeps
  Swarm's own allocations away from those IPs.
* c2c:internalReplicas > 1 (two hosts only): internal is a Swarm service instead of a
  container, its replicas on the overlay with addresses from the ip_range, reached by service
  name (endpoint mode dnsrr); its image is built on every host, under one tag.

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
  empty, and a rebuild replaces exactly that service's app container. The sandboxes run the
  base image, found locally (kept on destroy): a code change never touches them.
* The network and the sandboxes have fixed names and static IPs, so a replacement must
  delete the old one first (delete_before_replace).
* An app container is replaced create-first (delete_before_replace=False, overriding the
  provider's delete-first for containers): the new one joins the sandbox, listens beside the
  old one (SO_REUSEPORT), `wait` holds `pulumi up` until it is healthy, then the old one is
  stopped (gunicorn drains on SIGTERM) and removed. Its name ends in a digest of everything it
  is made of, so the name is new exactly when the container is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
TMPFS_PATH = "/tmp"  # noqa: S108 - a tmpfs mount, not a file
TMPFS_SIZE_MB = 16
TMPFS = {TMPFS_PATH: f"rw,noexec,nosuid,nodev,size={TMPFS_SIZE_MB}m"}
LOG_OPTS = {"max-size": "10m", "max-file": "3"}
SECURITY_OPTS = ("no-new-privileges:true",)
# Which of a service's two containers: the sandbox (network identity) or the app (the server).
ROLE_LABEL = "c2c.role"
SANDBOX_COMMAND = ("sleep", "infinity")
SANDBOX_SYSCTLS = {"net.ipv4.tcp_migrate_req": "1"}
# A sleeping process needs well under 1 MiB; Docker refuses limits under 6 MiB.
SANDBOX_MEMORY_MB = 16
# gunicorn's graceful_timeout is 5 s: give it that and some before the engine kills.
DESTROY_GRACE_SECONDS = 10

# Replicated internal (a Swarm service). Swarm has no restart policies of its own names: a
# task that ends is replaced (any), only after a failure (on-failure), or never (none).
SWARM_RESTART_CONDITIONS = {
    "no": "none",
    "on-failure": "on-failure",
    "always": "any",
    "unless-stopped": "any",
}
# Swarm's default is 5 s between a task's end and its replacement; a killed replica is back
# sooner with this, and a crash loop still pauses between attempts.
SWARM_RESTART_DELAY = "2s"
# Each replica's hostname (what internal reports): the service's name and the task's slot.
SWARM_HOSTNAME = "{{.Service.Name}}-{{.Task.Slot}}"
# dnsrr: the service's name resolves to each healthy replica's own address. The default, VIP,
# needs IPVS in the kernel (so does the ingress routing mesh); this one does not.
SWARM_ENDPOINT_MODE = "dnsrr"


@dataclass(frozen=True)
class OwnNetwork:
    """Where no sandbox holds them: the address and published ports the app takes itself."""

    address: str
    ports: Sequence[docker.ContainerPortArgs] | None


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
    outputs: dict[str, pulumi.Input[Any]]

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

        # Filled as the sandboxes are declared: the base image they run, per host.
        self.base_images: dict[str, docker.RemoteImage] = {}
        self.images = {
            service: self._image(service, args.services_dir, settings.host_of(service))
            for service in SERVICES
        }
        # Replicated: internal's image on every host a replica may run on, under one tag (a
        # content hash, so the same code everywhere). internal's own host keeps the resource
        # above, so turning replicas on or off never deletes the image a replica runs from.
        self.internal_images = {
            host.name: (
                self.images["internal"]
                if host == settings.host_of("internal")
                else self._image("internal", args.services_dir, host)
            )
            for host in settings.replica_hosts
        }

        self.internal: docker.Container | docker.Service = (
            self._replicated_internal()
            if settings.replicated
            else self._container(
                "internal",
                address=str(settings.internal_ip),
                port=settings.internal_port,
                env={},
                ports=None,
            )
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
                # Several peers behind one name: spread the requests (unset with one peer).
                **(
                    {
                        "UPSTREAM_MAX_REQUESTS_PER_CONNECTION": str(
                            settings.upstream_max_requests_per_connection
                        )
                    }
                    if settings.replicated
                    else {}
                ),
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
        # Where internal is: one container's host and static IP, or the replicated service's
        # name, size and the hosts its replicas may run on (Swarm picks; the IPs come and go
        # with the tasks, from the overlay's ip_range, so no static internalIp is exported).
        where_internal: dict[str, pulumi.Input[Any]] = (
            {
                "internalService": settings.container_name("internal"),
                "internalReplicas": settings.internal_replicas,
                "internalHosts": list(self.internal_images),
            }
            if settings.replicated
            else {
                "internalHost": internal_host.name,
                "internalHostAddress": internal_host.address,
                "internalIp": str(settings.internal_ip),
            }
        )
        self.outputs = {
            "endpoint": settings.endpoint,
            **where_internal,
            "externalHost": external_host.name,
            "externalHostAddress": external_host.address,
            "networkDriver": self.network.driver,
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

    def _image(self, service: str, context: Path, host: DockerHost) -> docker.RemoteImage:
        """`service`'s image, built by `host`'s engine. internal's copies on the other hosts of
        a replicated stack are resources of their own, named after their host."""
        settings = self._settings
        on_own_host = host == settings.host_of(service)
        resource = f"{self._name}-{service}-image" + ("" if on_own_host else f"-on-{host.name}")
        build_args = {
            "BASE_IMAGE": settings.base_image,
            "C2C_STACK": settings.stack,
            "SERVICE": service,
        }
        # Only what this image uses: another service's files never change its tag.
        tag = context_tag(context, build_args, only=(COMMON_DIR, service))
        return docker.RemoteImage(
            resource,
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
            opts=self._on(host),
        )

    def _env(self, port: int, env: Mapping[str, str]) -> dict[str, str]:
        settings = self._settings
        return {
            "PORT": str(port),
            "WEB_CONCURRENCY": str(settings.workers),
            "GUNICORN_THREADS": str(settings.threads),
            **env,
        }

    def _labels(self, service: str, role: str | None = None) -> dict[str, str]:
        """The stack's labels, the service's and, for a container, its role (sandbox or app)."""
        roles = {ROLE_LABEL: role} if role is not None else {}
        return dict(sorted({**self._settings.labels, "c2c.service": service, **roles}.items()))

    def _replicated_internal(self) -> docker.Service:
        """internal as a Swarm service of c2c:internalReplicas replicas, created through the
        manager; Swarm spreads them over its nodes and replaces any that ends.

        Hardening as the containers', where a Swarm service and pulumi-docker 5.1.0 can say it:
        uid 10001, read-only root, all capabilities dropped, a /tmp tmpfs, the memory limit,
        the image's HEALTHCHECK (a replica joins the DNS answer only once healthy). Not
        expressible here: no-new-privileges, tmpfs noexec/nosuid, ulimits, memory_swap.

        The image is the tag every host built, not an image ID: each host's build has its own
        ID. The provider asks the manager for the tag's registry digest when it creates the
        service, and each node tries a pull before it starts a task; both fail (nothing is
        pushed anywhere) and the node runs its local image of that tag.
        """
        settings = self._settings
        service = "internal"
        labels = self._labels(service)
        policy = settings.restart_policy
        return docker.Service(
            f"{self._name}-{service}-service",
            name=settings.container_name(service),
            labels=[docker.ServiceLabelArgs(label=k, value=v) for k, v in labels.items()],
            mode=docker.ServiceModeArgs(
                replicated=docker.ServiceModeReplicatedArgs(replicas=settings.internal_replicas)
            ),
            endpoint_spec=docker.ServiceEndpointSpecArgs(mode=SWARM_ENDPOINT_MODE),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=self.images[service].name,
                    hostname=SWARM_HOSTNAME,
                    env=self._env(settings.internal_port, {}),
                    user=CONTAINER_USER,
                    read_only=True,
                    cap_drops=["ALL"],
                    mounts=[
                        docker.ServiceTaskSpecContainerSpecMountArgs(
                            type="tmpfs",
                            target=TMPFS_PATH,
                            tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(
                                size_bytes=TMPFS_SIZE_MB * 1024 * 1024, mode=0o1777
                            ),
                        )
                    ],
                    stop_grace_period=f"{DESTROY_GRACE_SECONDS}s",
                    labels=[
                        docker.ServiceTaskSpecContainerSpecLabelArgs(label=k, value=v)
                        for k, v in labels.items()
                    ],
                ),
                networks_advanceds=[docker.ServiceTaskSpecNetworksAdvancedArgs(id=self.network.id)],
                resources=docker.ServiceTaskSpecResourcesArgs(
                    limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                        memory_bytes=settings.memory_limit_mb * 1024 * 1024
                    )
                ),
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                    condition=SWARM_RESTART_CONDITIONS[policy],
                    delay=SWARM_RESTART_DELAY,
                    max_attempts=settings.restart_max_retries if policy == "on-failure" else 0,
                    window="0s",  # unbounded, as Swarm reads it back
                ),
                log_driver=docker.ServiceTaskSpecLogDriverArgs(
                    name="json-file", options=dict(LOG_OPTS)
                ),
            ),
            # A new image rolls over one replica at a time, the new one healthy first.
            update_config=docker.ServiceUpdateConfigArgs(parallelism=1, order="start-first"),
            # `pulumi up` waits until every replica runs (is healthy), as `wait` does above.
            converge_config=docker.ServiceConvergeConfigArgs(
                delay="1s", timeout=f"{settings.healthy_within_seconds}s"
            ),
            opts=self._on(
                settings.network_host,
                depends_on=[self.network, *self.internal_images.values()],
                delete_before_replace=True,
            ),
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
        """`service` as a sandbox that holds its address (and published port) and the app
        container in the sandbox's namespace; on an overlay (no sandboxes, see
        StackSettings.sandboxed) as one container that does both. Returns the one that serves."""
        if not self._settings.sandboxed:
            network = OwnNetwork(address=address, ports=ports)
            return self._app(service, network, port=port, env=env, after=after)
        sandbox = self._sandbox(service, address=address, ports=ports)
        return self._app(service, sandbox, port=port, env=env, after=after)

    def _sandbox(
        self, service: str, *, address: str, ports: Sequence[docker.ContainerPortArgs] | None
    ) -> docker.Container:
        """The service's network identity: its static IP on the network and, for external, the
        published port; it only sleeps. Fixed name and address: replaced delete-first, which
        only a change of the network, the address, the port or the base image asks for.

        The resource keeps the name the service's one container had, so an existing stack's
        container is replaced by its sandbox (deleted first, freeing the address and port)."""
        settings = self._settings
        host = settings.host_of(service)
        return docker.Container(
            f"{self._name}-{service}",
            name=settings.sandbox_name(service),
            # The app joins this namespace and reports this name (Docker gives a container on
            # another's network that one's hostname).
            hostname=settings.container_name(service),
            image=self._base_image(host).image_id,
            command=list(SANDBOX_COMMAND),
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=self.network.name, ipv4_address=address)
            ],
            ports=list(ports) if ports is not None else None,
            # Per network namespace: a listener that closes hands the connections still queued
            # on it to another listener of its SO_REUSEPORT group (the app's next container)
            # instead of resetting them.
            sysctls=dict(SANDBOX_SYSCTLS),
            user=CONTAINER_USER,
            read_only=True,
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=list(SECURITY_OPTS),
            memory=SANDBOX_MEMORY_MB,
            memory_swap=SANDBOX_MEMORY_MB,
            restart=settings.restart_policy,
            max_retry_count=self._max_retry_count(),
            # Nothing to drain: `docker stop` and destroy end it at once.
            stop_signal="SIGKILL",
            must_run=True,
            log_driver="json-file",
            log_opts=dict(LOG_OPTS),
            labels=self._label_args(service, "sandbox"),
            opts=self._on(host, depends_on=[self.network], delete_before_replace=True),
        )

    def _base_image(self, host: DockerHost) -> docker.RemoteImage:
        """The base image on `host`, for the sandboxes: found locally (the services' images are
        built from it there), never removed by this stack."""
        if host.name not in self.base_images:
            suffix = "" if host == self._settings.network_host else f"-on-{host.name}"
            self.base_images[host.name] = docker.RemoteImage(
                f"{self._name}-base-image{suffix}",
                name=self._settings.base_image,
                keep_locally=True,
                opts=self._on(host),
            )
        return self.base_images[host.name]

    def _app(
        self,
        service: str,
        holder: docker.Container | OwnNetwork,
        *,
        port: int,
        env: Mapping[str, str],
        after: Sequence[pulumi.Resource],
    ) -> docker.Container:
        """The service's server, in the sandbox's network namespace. Replaced create-first: the
        new container listens beside the old one (SO_REUSEPORT), `wait` holds `pulumi up` until
        it is healthy (its probe counts its own workers only), then the old one is stopped
        (SIGTERM: gunicorn drains) and removed.

        Create-first needs a new name for every replacement: the name ends in a digest of all
        the container is made of (image ID, sandbox ID, and every setting below), so it changes
        exactly when the container is replaced and a no-change `pulumi up` stays empty.

        holder: what holds the service's address: its sandbox or, without one (OwnNetwork), the
        app itself, which then takes the address, the published port and the service's fixed
        name, is replaced delete-first and has no role label."""
        settings = self._settings
        image = self.images[service]
        own = isinstance(holder, OwnNetwork)
        # Everything the app is made of besides its image and sandbox, as plain values; each is
        # passed to the container below and enters the name's digest.
        spec: dict[str, Any] = {
            "envs": [f"{key}={value}" for key, value in sorted(self._env(port, env).items())],
            "user": CONTAINER_USER,
            "tmpfs": dict(TMPFS),
            "cap_drops": ["ALL"],
            "security_opts": list(SECURITY_OPTS),
            "memory": settings.memory_limit_mb,
            "nproc": settings.nproc_limit,
            "restart": settings.restart_policy,
            "max_retry_count": self._max_retry_count(),
            "grace": DESTROY_GRACE_SECONDS,
            "log_opts": dict(LOG_OPTS),
            "labels": self._labels(service, None if own else "app"),
        }
        network: dict[str, Any]
        if isinstance(holder, OwnNetwork):
            resource = f"{self._name}-{service}"
            network = {
                "name": settings.container_name(service),
                "hostname": settings.container_name(service),
                "networks_advanced": [
                    docker.ContainerNetworksAdvancedArgs(
                        name=self.network.name, ipv4_address=holder.address
                    )
                ],
                "ports": list(holder.ports) if holder.ports is not None else None,
            }
        else:
            resource = f"{self._name}-{service}-app"
            network = {
                "name": pulumi.Output.all(image.image_id, holder.id).apply(
                    lambda ids: f"{settings.container_name(service)}-{_digest([*ids, spec])}"
                ),
                "network_mode": holder.id.apply(lambda sandbox_id: f"container:{sandbox_id}"),
            }
        return docker.Container(
            resource,
            image=image.image_id,
            **network,
            envs=spec["envs"],
            user=spec["user"],
            read_only=True,
            tmpfs=spec["tmpfs"],
            capabilities=docker.ContainerCapabilitiesArgs(drops=spec["cap_drops"]),
            security_opts=spec["security_opts"],
            memory=spec["memory"],
            # Equal to memory: no swap on top of the limit (and the engine reads back exactly
            # this, where an unset value comes back as twice the memory and shows as a diff).
            memory_swap=spec["memory"],
            # pulumi-docker 5.1.0 has no pids_limit; RLIMIT_NPROC is the nearest hard cap.
            ulimits=[
                docker.ContainerUlimitArgs(name="nproc", soft=spec["nproc"], hard=spec["nproc"])
            ],
            restart=spec["restart"],
            max_retry_count=spec["max_retry_count"],
            # No healthcheck here: the image's HEALTHCHECK (services/Dockerfile) is the one
            # probe, and `wait` holds `pulumi up` until it reports healthy.
            wait=True,
            # `pulumi up` fails if it is not healthy by then (c2c:healthyWithinSeconds).
            wait_timeout=settings.healthy_within_seconds,
            must_run=True,
            destroy_grace_seconds=spec["grace"],
            log_driver="json-file",
            log_opts=spec["log_opts"],
            labels=[
                docker.ContainerLabelArgs(label=key, value=value)
                for key, value in spec["labels"].items()
            ],
            opts=self._on(
                settings.host_of(service),
                depends_on=[image, *after, *([self.network] if own else [])],
                # Explicit: the provider asks for delete-first for every container. A fixed
                # name and address (no sandbox) leave no other way.
                delete_before_replace=own,
            ),
        )

    def _max_retry_count(self) -> int | None:
        # Docker rejects a retry count with any policy but on-failure.
        settings = self._settings
        return settings.restart_max_retries if settings.restart_policy == "on-failure" else None

    def _label_args(self, service: str, role: str) -> list[docker.ContainerLabelArgs]:
        return [
            docker.ContainerLabelArgs(label=key, value=value)
            for key, value in self._labels(service, role).items()
        ]


def _seconds(milliseconds: int) -> str:
    return str(milliseconds / 1000)


def _digest(parts: Sequence[Any]) -> str:
    """12 hex digits of a digest of JSON-able parts."""
    text = json.dumps(list(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
