"""Run the Pulumi program under recording mocks: what it declares, how, and what it exports.

No engine and no Docker: `pulumi.runtime.set_mocks` stands in for both. The monitor records
each registration's inputs (in wire names, e.g. `networksAdvanced`), its parent, its
dependencies and whether it is replaced delete-first; the mocks echo inputs as outputs and
add the outputs the real provider computes and the program consumes (`repoDigest`,
`imageId`).
"""

from __future__ import annotations

import hashlib
import json
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

REPO_ROOT = Path(__file__).resolve().parents[3]
INFRA_DIR = REPO_ROOT / "infra"

NETWORK = "docker:index/network:Network"
CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
COMPONENT = "c2c:index:ServicePair"
PROVIDER = "pulumi:providers:docker"


FAKE_DOCKERIGNORE = "*\n!Dockerfile\n!app/\n**/__pycache__\n**/*.pyc\n"
# One context for several images, shaped like services/: one Dockerfile, shared code, and a
# directory per service, named one by one (Docker does not apply !*/app/ inside excluded dirs).
FAKE_SHARED_DOCKERIGNORE = (
    "*\n!Dockerfile\n!common/\n!internal/app/\n!external/app/\n**/__pycache__\n**/*.pyc\n"
)
FAKE_SHARED_DOCKERFILE = (
    "FROM scratch\nARG SERVICE\nCOPY common/ /app/common/\nCOPY ${SERVICE}/app/ /app/\n"
)


def write_service(root: Path, service: str) -> Path:
    """A minimal build context of one image: Dockerfile, ignore file, code."""
    context = root / service
    (context / "app").mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM scratch\nCOPY app/ /app/\n# {service}\n")
    (context / ".dockerignore").write_text(FAKE_DOCKERIGNORE)
    (context / "app" / "main.py").write_text(f"SERVICE = {service!r}\n")
    return context


def write_services(root: Path) -> Path:
    """A minimal build context shaped like services/: the images of internal and external."""
    (root / "common").mkdir(parents=True)
    (root / "Dockerfile").write_text(FAKE_SHARED_DOCKERFILE)
    (root / ".dockerignore").write_text(FAKE_SHARED_DOCKERIGNORE)
    (root / "common" / "shared.py").write_text("SHARED = 1\n")
    for service in ("internal", "external"):
        (root / service / "app").mkdir(parents=True)
        (root / service / "app" / "main.py").write_text(f"SERVICE = {service!r}\n")
    return root


def config_text(value: object) -> str:
    """A config value as the CLI hands it to the program: objects as JSON, the rest as text."""
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def project_defaults() -> dict[str, str]:
    """Every key's default from Pulumi.yaml, as the strings the CLI hands the program."""
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    config: dict[str, dict[str, object]] = project["config"]
    return {key: config_text(spec["default"]) for key, spec in config.items()}


def fake_image_id(image_name: str) -> str:
    """A stand-in for the engine's image ID: a function of the image name (so of its tag)."""
    return "sha256:" + hashlib.sha256(image_name.encode()).hexdigest()


@dataclass
class Registration:
    type: str
    name: str
    inputs: dict[str, Any]
    urn: str = ""
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    # Whether the program set delete_before_replace at all (else the provider's choice holds).
    delete_before_replace_defined: bool = False
    # "<provider urn>::<id>" of an explicit provider; "" for the default provider.
    provider: str = ""


class RecordingMocks(Mocks):
    def __init__(self) -> None:
        self.registered: list[Registration] = []
        # URN -> outputs a component (or the stack) registered with register_outputs.
        self.resource_outputs: dict[str, dict[str, Any]] = {}

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered.append(Registration(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if args.typ == REMOTE_IMAGE:
            outputs["imageId"] = fake_image_id(args.inputs["name"])
        return f"{args.name}-id", outputs

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class RecordingMonitor(MockMonitor):
    """Adds to each registration what the mocks do not see: parent, deps, replace order."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks

    def RegisterResourceOutputs(self, request: Any) -> Any:
        deserialize: Callable[[Any], dict[str, Any]] = rpc.deserialize_properties
        self.recording.resource_outputs[request.urn] = deserialize(request.outputs)
        register: Callable[[Any], Any] = super().RegisterResourceOutputs
        return register(request)

    def RegisterResource(self, request: Any) -> Any:
        # The SDK's method is untyped; going through a typed name keeps mypy strict here.
        register: Callable[[Any], Any] = super().RegisterResource
        response = register(request)
        if request.type != "pulumi:pulumi:Stack":
            # Registrations run concurrently: find this one by its (type, name), unique.
            (entry,) = [
                e
                for e in self.recording.registered
                if (e.type, e.name) == (request.type, request.name)
            ]
            entry.urn = response.urn
            entry.parent = request.parent
            entry.dependencies = list(request.dependencies)
            entry.delete_before_replace = request.deleteBeforeReplace
            entry.delete_before_replace_defined = request.deleteBeforeReplaceDefined
            entry.provider = request.provider
        return response


@dataclass
class Run:
    registered: list[Registration]
    outputs: dict[str, Any]
    resource_outputs: dict[str, dict[str, Any]]

    def of_type(self, type_: str) -> list[Registration]:
        return [entry for entry in self.registered if entry.type == type_]

    def only(self, type_: str, **inputs: Any) -> Registration:
        found = [
            entry
            for entry in self.of_type(type_)
            if all(entry.inputs.get(key) == value for key, value in inputs.items())
        ]
        assert len(found) == 1, f"expected one {type_} with {inputs}, found {len(found)}"
        return found[0]

    def provider_urn(self, entry: Registration) -> str:
        """The URN of the explicit provider `entry` was registered with ("" for none)."""
        return entry.provider.rsplit("::", 1)[0] if entry.provider else ""

    def container(self, name: str) -> Registration:
        return self.only(CONTAINER, name=name)

    def sandbox(self, service: str) -> Registration:
        """`service`'s sandbox: the container that holds its address (and published port)."""
        return self.only_named(CONTAINER, f"c2c-{service}")

    def app(self, service: str) -> Registration:
        """`service`'s app container: gunicorn, in the sandbox's network namespace."""
        return self.only_named(CONTAINER, f"c2c-{service}-app")

    def single(self, service: str) -> Registration:
        """`service`'s one container where there are no sandboxes (an overlay)."""
        (entry,) = [e for e in self.of_type(CONTAINER) if e.name == f"c2c-{service}"]
        assert "networkMode" not in entry.inputs, entry.inputs
        return entry

    def only_named(self, type_: str, logical_name: str) -> Registration:
        (entry,) = [e for e in self.of_type(type_) if e.name == logical_name]
        return entry

    def image(self, service: str) -> Registration:
        found = [e for e in self.of_type(REMOTE_IMAGE) if e.name.endswith(f"-{service}-image")]
        assert len(found) == 1
        return found[0]

    def inputs_by_name(self) -> dict[str, dict[str, Any]]:
        """Inputs per logical name; registration order varies, so compare these."""
        return {entry.name: entry.inputs for entry in self.registered}


def run_program(
    program: Callable[[], object],
    config: Mapping[str, str],
    stack: str = "dev",
    mocks: RecordingMocks | None = None,
) -> Run:
    """Run `program` as stack `stack` with `c2c:*` config; return what it registered.

    Pass `mocks` to inspect the registrations even when the program raises.
    """
    runtime_settings.ROOT.set(None)  # a fresh root stack, so exports do not leak between runs
    mocks = RecordingMocks() if mocks is None else mocks
    pulumi.runtime.set_mocks(
        mocks, project="c2c", stack=stack, preview=False, monitor=RecordingMonitor(mocks)
    )
    pulumi.runtime.set_all_config({f"c2c:{key}": value for key, value in config.items()})
    outputs: dict[str, Any] = {}

    def body() -> pulumi.Output[None] | None:
        program()
        root = runtime_settings.get_root_resource()
        exported = dict(getattr(root, "outputs", {}))
        if not exported:
            return None
        return pulumi.Output.all(**exported).apply(outputs.update)

    # pulumi.runtime.test runs `body` and waits for every resource and output it started.
    run_to_completion: Callable[[Callable[[], object]], Callable[[], None]] = pulumi.runtime.test
    run_to_completion(body)()
    return Run(
        registered=mocks.registered, outputs=outputs, resource_outputs=mocks.resource_outputs
    )


def run_main(
    config: Mapping[str, str], stack: str = "dev", mocks: RecordingMocks | None = None
) -> Run:
    """Run infra/__main__.py itself, the way the language host does (runpy on the directory)."""
    return run_program(
        lambda: runpy.run_path(str(INFRA_DIR), run_name="__main__"), config, stack, mocks
    )
