"""How toolchain/pulumi-language-python-exec ends a run, against a fake engine.

The fake serves the two gRPC services a Python program talks to (the engine's Log, and the
resource monitor) on loopback and records every diagnostic. The runner is started as the
language host starts it, so signals, exit codes and stderr are the real ones. What is checked is
what the user would see: the `error:` diagnostics the engine receives and the runner's stderr
(which the engine shows as well).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc  # type: ignore[import-untyped]  # no type information shipped
import pulumi
import pytest
from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import engine_pb2, resource_pb2, resource_pb2_grpc
from pulumi.runtime.settings import grpc_error_to_exception

REPO_ROOT = Path(__file__).resolve().parents[3]
EXEC = REPO_ROOT / "toolchain" / "pulumi-language-python-exec"
BAIL = 32
STACK_TYPE = "pulumi:pulumi:Stack"
# What the engine answers a registration when it has shut the monitor down (source_eval.go).
SHUTDOWN_DETAIL = "resource monitor shut down while waiting on step's done channel"


def load_file(path: Path, name: str) -> ModuleType:
    """Import one source file as a module (without touching sys.modules)."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def load_exec() -> ModuleType:
    """The runner (a script without .py) as a module; main does not run."""
    return load_file(EXEC, "language_python_exec")


@dataclass
class FakeEngine:
    """Engine + resource monitor on one loopback port; `shutdown` makes registrations fail."""

    shutdown: bool = False
    logs: list[tuple[int, str]] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)  # output names, as registered
    lock: threading.Lock = field(default_factory=threading.Lock)

    def errors(self) -> list[str]:
        with self.lock:
            return [message for severity, message in self.logs if severity == engine_pb2.ERROR]

    def log(self, request: Any, _context: Any) -> Any:
        with self.lock:
            self.logs.append((request.severity, request.message))
        return empty_pb2.Empty()

    def supports_feature(self, _request: Any, _context: Any) -> Any:
        return resource_pb2.SupportsFeatureResponse(hasSupport=False)

    def register_resource(self, request: Any, context: Any) -> Any:
        with self.lock:
            self.registered.append(request.type)
        if self.shutdown and request.type != STACK_TYPE:
            context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_DETAIL)
        return resource_pb2.RegisterResourceResponse(
            urn=f"urn:pulumi:test::proj::{request.type}::{request.name}",
            id=f"{request.name}-id" if request.custom else "",
            object=struct_pb2.Struct(),
        )

    def register_outputs(self, request: Any, _context: Any) -> Any:
        with self.lock:
            self.exported.extend(request.outputs.fields)
        return empty_pb2.Empty()

    def empty(self, _request: Any, _context: Any) -> Any:
        return empty_pb2.Empty()

    def handlers(self) -> list[Any]:
        def unary(fn: Callable[[Any, Any], Any], request_type: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=request_type.FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )

        # Any other method answers UNIMPLEMENTED, which the SDK tolerates where it matters.
        engine = {"Log": unary(self.log, engine_pb2.LogRequest)}
        monitor = {
            "SupportsFeature": unary(self.supports_feature, resource_pb2.SupportsFeatureRequest),
            "RegisterResource": unary(self.register_resource, resource_pb2.RegisterResourceRequest),
            "RegisterResourceOutputs": unary(
                self.register_outputs, resource_pb2.RegisterResourceOutputsRequest
            ),
            "SignalAndWaitForShutdown": unary(self.empty, empty_pb2.Empty),
        }
        return [
            grpc.method_handlers_generic_handler("pulumirpc.Engine", engine),
            grpc.method_handlers_generic_handler("pulumirpc.ResourceMonitor", monitor),
        ]


@dataclass
class Served:
    engine: FakeEngine
    address: str


@pytest.fixture
def served() -> Iterator[Served]:
    fake = FakeEngine()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(fake.handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield Served(fake, f"127.0.0.1:{port}")
    finally:
        server.stop(grace=None)


def write_program(tmp_path: Path, body: str) -> Path:
    program = tmp_path / "prog"
    program.mkdir()
    (program / "__main__.py").write_text(textwrap.dedent(body))
    return program


def exec_command(program: Path, engine: str | None, monitor: str) -> list[str]:
    command = [sys.executable, str(EXEC), "--monitor", monitor]
    if engine is not None:
        command += ["--engine", engine]
    command += ["--project", "proj", "--stack", "test", "--pwd", str(program.parent)]
    return [*command, "--dry_run", "false", str(program)]


def exec_env() -> dict[str, str]:
    # As the host sets it up; infra/ importable so programs can raise the real ConfigError.
    return {
        **os.environ,
        "PULUMI_CONFIG": "{}",
        "PULUMI_CONFIG_SECRET_KEYS": "[]",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO_ROOT / "infra"),
    }


def run_exec(
    program: Path, served: Served, with_engine: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        exec_command(program, served.address if with_engine else None, served.address),
        env=exec_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_success_exits_zero_and_reports_nothing(tmp_path: Path, served: Served) -> None:
    program = write_program(
        tmp_path,
        """
        import pulumi
        res = pulumi.CustomResource("test:index:Thing", "thing")
        pulumi.export("id", res.id)
        """,
    )
    proc = run_exec(program, served)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert served.engine.errors() == []
    assert served.engine.registered == [STACK_TYPE, "test:index:Thing"]


def test_success_ends_at_once_with_output_and_exports_delivered(
    tmp_path: Path, served: Served
) -> None:
    # The process ends without interpreter shutdown (hard_exit), only after run_in_stack has
    # delivered every registration and the stack's outputs.
    program = write_program(
        tmp_path,
        """
        import sys
        import pulumi
        res = pulumi.CustomResource("test:index:Thing", "thing")
        pulumi.export("id", res.id)
        sys.stdout.write("last words, no newline")
        """,
    )
    proc = run_exec(program, served)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.endswith("last words, no newline")
    assert served.engine.registered == [STACK_TYPE, "test:index:Thing"]
    assert served.engine.exported == ["id"]


def test_config_error_is_one_error_line_per_bad_key(tmp_path: Path, served: Served) -> None:
    program = write_program(
        tmp_path,
        """
        from c2c_infra import ConfigError
        raise ConfigError([("c2c:subnet", "'x' is not a valid CIDR network"),
                           ("c2c:hostPort", "must be 1-65535")])
        """,
    )
    proc = run_exec(program, served)
    assert proc.returncode == BAIL
    assert proc.stderr == ""
    assert served.engine.errors() == [
        "c2c:subnet: 'x' is not a valid CIDR network",
        "c2c:hostPort: must be 1-65535",
    ]


def test_unexpected_exception_shows_the_program_traceback_once(
    tmp_path: Path, served: Served
) -> None:
    program = write_program(
        tmp_path,
        """
        def lookup():
            return {}["missing"]

        lookup()
        """,
    )
    proc = run_exec(program, served)
    assert proc.returncode == BAIL
    assert proc.stderr == ""  # the engine has it; stderr would show it a second time
    [message] = served.engine.errors()
    assert message.startswith("Program failed with an unhandled exception:\nTraceback")
    assert f'File "{program / "__main__.py"}", line 5, in <module>' in message
    assert "in lookup" in message
    assert message.endswith("KeyError: 'missing'")
    # The runner's own frames (this script, asyncio, the SDK's stack runner) are left out.
    assert str(EXEC) not in message
    assert "asyncio" not in message
    assert "runpy" not in message


def test_sys_exit_with_a_code_is_one_line(tmp_path: Path, served: Served) -> None:
    program = write_program(tmp_path, "import sys\nsys.exit(3)\n")
    proc = run_exec(program, served)
    assert (proc.returncode, proc.stderr) == (BAIL, "")
    assert served.engine.errors() == ["Program exited with exit code 3"]


def test_engine_ending_the_run_is_silent(tmp_path: Path, served: Served) -> None:
    """A resource failed elsewhere: the engine shut the monitor down and reports the cause."""
    served.engine.shutdown = True
    program = write_program(
        tmp_path,
        """
        import pulumi
        first = pulumi.CustomResource("test:index:Thing", "first")
        pulumi.CustomResource("test:index:Thing", "second",
                              opts=pulumi.ResourceOptions(depends_on=[first]))
        """,
    )
    proc = run_exec(program, served)
    assert proc.returncode == BAIL
    assert proc.stderr == ""
    assert served.engine.errors() == []
    assert "test:index:Thing" in served.engine.registered  # the failure did come from the RPC


@pytest.mark.parametrize(
    "where",
    [
        "import time\ntime.sleep(60)\n",
        # Blocked inside an apply, i.e. deep in the SDK's event loop, as in a real update.
        "import time\nimport pulumi\n"
        'r = pulumi.CustomResource("test:index:Thing", "thing")\n'
        "r.id.apply(lambda _: time.sleep(60))\n",
    ],
    ids=["program-body", "apply-callback"],
)
def test_sigint_from_the_engine_ends_the_run_silently(
    tmp_path: Path, served: Served, where: str
) -> None:
    """The engine stops a language host with SIGINT to its process group (then SIGKILL)."""
    ready = tmp_path / "ready"
    program = write_program(tmp_path, f"open({str(ready)!r}, 'w').close()\n{where}")
    proc = subprocess.Popen(
        exec_command(program, served.address, served.address),
        env=exec_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the program never started"
            time.sleep(0.05)
        time.sleep(0.3)  # let it reach the sleep (or the apply)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGINT
    assert (stdout, stderr) == ("", "")
    assert served.engine.errors() == []


def test_without_an_engine_the_error_is_one_stderr_line(tmp_path: Path, served: Served) -> None:
    program = write_program(tmp_path, "raise RuntimeError('boom\\nsecond line')\n")
    proc = run_exec(program, served, with_engine=False)
    assert proc.returncode == 1
    assert proc.stderr == "pulumi-language-python-exec: RuntimeError: boom second line\n"


def test_a_missing_program_is_one_stderr_line(tmp_path: Path, served: Served) -> None:
    proc = run_exec(tmp_path / "nowhere", served)
    assert proc.returncode == 1
    assert proc.stderr.startswith("pulumi-language-python-exec: FileNotFoundError: ")
    assert proc.stderr.count("\n") == 1


def monitor_rpc_error(served: Served) -> BaseException:
    """A real grpc.RpcError: what a registration gets once the engine shut the monitor down."""
    served.engine.shutdown = True
    with grpc.insecure_channel(served.address) as channel:
        stub = resource_pb2_grpc.ResourceMonitorStub(channel)
        request = resource_pb2.RegisterResourceRequest(type="test:index:Thing", name="x")
        with pytest.raises(grpc.RpcError) as caught:
            stub.RegisterResource(request, timeout=10)
    error: BaseException = caught.value
    return error


def test_the_sdks_monitor_shutdown_errors_are_recognised(served: Served) -> None:
    """Ties the runner to the pinned SDK: its wording for an UNAVAILABLE monitor, and chains."""
    lpe = load_exec()
    rpc_error = monitor_rpc_error(served)
    sdk_error = grpc_error_to_exception(rpc_error)  # what the SDK raises into the program
    assert lpe.classify(rpc_error) is lpe.Failure.ENGINE_ENDED
    assert lpe.classify(sdk_error) is lpe.Failure.ENGINE_ENDED

    # A program that turned the failure into its own exception (`raise ... from err`).
    chained = ValueError("could not create the network")
    chained.__cause__ = sdk_error
    assert lpe.classify(chained) is lpe.Failure.ENGINE_ENDED


def test_other_failures_are_classified_by_type() -> None:
    lpe = load_exec()
    assert lpe.classify(KeyboardInterrupt()) is lpe.Failure.INTERRUPTED
    assert lpe.classify(SystemExit(2)) is lpe.Failure.EXITED
    assert lpe.classify(pulumi.RunError("c2c:subnet: bad")) is lpe.Failure.USER_ERROR
    assert lpe.classify(RuntimeError("Resource monitor has terminated")) is (
        lpe.Failure.UNEXPECTED  # only the SDK's RunError with that wording means shutdown
    )


def test_exception_chain_survives_cycles() -> None:
    lpe = load_exec()
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__cause__ = second, first
    assert list(lpe.exception_chain(first)) == [first, second]


def test_traceback_skips_packages_of_a_virtualenv_inside_the_program_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lpe = load_exec()
    program_dir = tmp_path / "prog"
    site = program_dir / ".venv" / "site-packages"
    site.mkdir(parents=True)
    (site / "fake_sdk.py").write_text("def call(f):\n    f()\n")
    (program_dir / "main.py").write_text("def user():\n    raise KeyError('k')\n")
    sdk = load_file(site / "fake_sdk.py", "fake_sdk")
    user = load_file(program_dir / "main.py", "fake_program")
    monkeypatch.setattr(lpe.sysconfig, "get_path", lambda _name: str(site))

    with pytest.raises(KeyError) as caught:
        sdk.call(user.user)  # this test -> installed package -> program
    tb = lpe.program_traceback(caught.value.__traceback__, program_dir)
    assert tb is not None
    assert tb.tb_frame.f_code.co_name == "user"
    # Nothing of the program's: only the runner's (here: this test's) own frames are skipped.
    tb = lpe.program_traceback(caught.value.__traceback__, tmp_path / "elsewhere")
    assert tb is not None
    assert tb.tb_frame.f_code.co_filename == __file__
