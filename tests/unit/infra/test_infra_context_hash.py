"""The image tag changes exactly when what `docker build` would receive changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from c2c_infra.context_hash import TAG_LENGTH, context_digest, context_paths, context_tag
from tests.unit.infra.infra_harness import REPO_ROOT, write_service, write_services

ARGS = {"BASE_IMAGE": "python:3.11-slim", "C2C_STACK": "dev"}


@pytest.fixture
def context(tmp_path: Path) -> Path:
    return write_service(tmp_path, "svc")


def test_tag_is_a_hex_prefix_of_the_digest(context: Path) -> None:
    tag = context_tag(context, ARGS)
    assert len(tag) == TAG_LENGTH
    assert context_digest(context, ARGS).startswith(tag)
    int(tag, 16)


def test_same_content_gives_the_same_tag_anywhere(context: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "svc"
    shutil.copytree(context, copy)
    assert context_tag(copy, ARGS) == context_tag(context, ARGS)
    # Timestamps are not content.
    os.utime(copy / "app" / "main.py", (0, 0))
    assert context_tag(copy, ARGS) == context_tag(context, ARGS)


def test_changing_an_included_file_changes_the_tag(context: Path) -> None:
    before = context_tag(context, ARGS)
    (context / "app" / "main.py").write_text("SERVICE = 'changed'\n")
    assert context_tag(context, ARGS) != before


def test_changing_the_dockerfile_changes_the_tag(context: Path) -> None:
    before = context_tag(context, ARGS)
    with (context / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("USER 10001\n")
    assert context_tag(context, ARGS) != before


def test_adding_renaming_and_removing_included_files_change_the_tag(context: Path) -> None:
    tags = {context_tag(context, ARGS)}
    (context / "app" / "extra.py").write_text("X = 1\n")
    tags.add(context_tag(context, ARGS))
    (context / "app" / "extra.py").rename(context / "app" / "other.py")
    tags.add(context_tag(context, ARGS))
    (context / "app" / "other.py").unlink()
    # Back to the original content: back to the original tag.
    assert context_tag(context, ARGS) in tags
    assert len(tags) == 3


def test_making_a_file_executable_changes_the_tag(context: Path) -> None:
    before = context_tag(context, ARGS)
    (context / "app" / "main.py").chmod(0o755)
    assert context_tag(context, ARGS) != before


def test_build_args_are_part_of_the_tag(context: Path) -> None:
    before = context_tag(context, ARGS)
    assert context_tag(context, {**ARGS, "BASE_IMAGE": "c2c-base/python:3.11-bookworm"}) != before
    assert context_tag(context, {**ARGS, "C2C_STACK": "staging"}) != before
    # Order of the mapping is irrelevant.
    assert context_tag(context, dict(reversed(list(ARGS.items())))) == before


def test_ignored_files_do_not_change_the_tag(context: Path) -> None:
    before = context_tag(context, ARGS)
    # Outside the allow-list, or matching an exclusion inside it.
    (context / "README.md").write_text("notes\n")
    (context / "tests").mkdir()
    (context / "tests" / "test_app.py").write_text("def test(): pass\n")
    (context / "app" / "__pycache__").mkdir()
    (context / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (context / "app" / "stale.pyc").write_bytes(b"\x00")
    assert context_tag(context, ARGS) == before
    assert context_paths(context) == [
        ".dockerignore",
        "Dockerfile",
        "app",
        "app/main.py",
    ]


def test_an_exception_pattern_brings_a_path_back(context: Path) -> None:
    before = context_tag(context, ARGS)
    (context / "README.md").write_text("notes\n")
    assert context_tag(context, ARGS) == before
    with (context / ".dockerignore").open("a") as ignore:
        ignore.write("!README.md\n")
    assert "README.md" in context_paths(context)
    with_readme = context_tag(context, ARGS)
    (context / "README.md").write_text("other notes\n")
    assert context_tag(context, ARGS) != with_readme


def test_root_only_and_recursive_patterns_follow_docker_rules(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "pkg" / "sub").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\n")
    # Docker, unlike git, anchors `*.log` at the context root; `**/` reaches any depth.
    (context / ".dockerignore").write_text("# comment\n*.log\n**/*.tmp\n\n")
    for name in ("top.log", "pkg/deep.log", "top.tmp", "pkg/sub/deep.tmp", "pkg/keep.py"):
        (context / name).write_text(name)
    assert context_paths(context) == [
        ".dockerignore",
        "Dockerfile",
        "pkg",
        "pkg/deep.log",
        "pkg/keep.py",
        "pkg/sub",
    ]


def test_dockerfile_is_always_sent_even_if_ignored(context: Path) -> None:
    (context / ".dockerignore").write_text("*\n")
    assert context_paths(context) == [".dockerignore", "Dockerfile"]


def test_without_dockerignore_everything_counts(context: Path) -> None:
    (context / ".dockerignore").unlink()
    before = context_tag(context, ARGS)
    (context / "README.md").write_text("notes\n")
    assert context_tag(context, ARGS) != before


def test_symlink_target_is_content(context: Path) -> None:
    (context / "app" / "link").symlink_to("main.py")
    before = context_tag(context, ARGS)
    (context / "app" / "link").unlink()
    (context / "app" / "link").symlink_to("other.py")
    assert context_tag(context, ARGS) != before


def test_a_context_without_dockerfile_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Dockerfile"):
        context_tag(tmp_path / "empty", ARGS)


# --- one context, several images: `only` -------------------------------------------------


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    return write_services(tmp_path / "services")


def _tags(context: Path) -> dict[str, str]:
    return {
        service: context_tag(context, {**ARGS, "SERVICE": service}, only=("common", service))
        for service in ("internal", "external")
    }


def test_only_keeps_the_named_parts_and_the_files_every_build_reads(shared: Path) -> None:
    assert context_paths(shared, only=("common", "internal")) == [
        ".dockerignore",
        "Dockerfile",
        "common",
        "common/shared.py",
        "internal/app",
        "internal/app/main.py",
    ]
    # Without `only`: everything the engine receives, both services included.
    assert "external/app/main.py" in context_paths(shared)


@pytest.mark.parametrize(("service", "other"), [("internal", "external"), ("external", "internal")])
def test_a_change_in_one_service_changes_only_its_tag(
    shared: Path, service: str, other: str
) -> None:
    before = _tags(shared)
    (shared / service / "app" / "new.py").write_text("X = 1\n")
    after = _tags(shared)
    assert after[service] != before[service]
    assert after[other] == before[other]


@pytest.mark.parametrize("path", ["common/shared.py", "Dockerfile", ".dockerignore"])
def test_a_change_to_a_shared_part_changes_every_tag(shared: Path, path: str) -> None:
    before = _tags(shared)
    with (shared / path).open("a") as handle:
        handle.write("\n# changed\n")
    after = _tags(shared)
    assert after["internal"] != before["internal"]
    assert after["external"] != before["external"]


def test_ignored_files_in_a_named_part_change_no_tag(shared: Path) -> None:
    before = _tags(shared)
    (shared / "internal" / "tests").mkdir()
    (shared / "internal" / "tests" / "test_app.py").write_text("def test(): pass\n")
    (shared / "internal" / "app" / "stale.pyc").write_bytes(b"\x00")
    (shared / "README.md").write_text("notes\n")
    assert _tags(shared) == before


def test_only_is_normalised_and_unordered(shared: Path) -> None:
    tag = context_tag(shared, ARGS, only=("common", "internal"))
    assert context_tag(shared, ARGS, only=("./internal/", "common/")) == tag
    # A different selection is different content.
    assert context_tag(shared, ARGS, only=("common",)) != tag
    assert context_tag(shared, ARGS) != tag


@pytest.mark.parametrize(
    "part",
    [
        "intern",  # a prefix of a name is not a path: nothing under intern/
        "missing",
        "internal/tests",  # exists on disk once created, but is ignored
    ],
)
def test_a_part_that_sends_nothing_is_an_error(shared: Path, part: str) -> None:
    (shared / "internal" / "tests").mkdir()
    (shared / "internal" / "tests" / "test_app.py").write_text("def test(): pass\n")
    with pytest.raises(FileNotFoundError, match=f"^'{part}' sends nothing"):
        context_tag(shared, ARGS, only=("common", part))


@pytest.mark.parametrize("part", ["", ".", "/abs", "../services", "common/../internal"])
def test_a_part_outside_the_context_is_refused(shared: Path, part: str) -> None:
    with pytest.raises(ValueError, match="not a path inside the build context"):
        context_paths(shared, only=(part,))


def test_one_str_is_not_taken_for_a_list_of_parts(shared: Path) -> None:
    with pytest.raises(TypeError, match="not one str"):
        context_paths(shared, only="internal")


# --- the real services/ context ---------------------------------------------------------


SERVICES_DIR = REPO_ROOT / "services"


@pytest.mark.parametrize("service", ["internal", "external"])
def test_each_real_image_hashes_its_code_and_not_the_rest(service: str) -> None:
    other = "external" if service == "internal" else "internal"
    paths = context_paths(SERVICES_DIR, only=("common", service))
    package = f"{service}_service"
    assert {
        "Dockerfile",
        ".dockerignore",
        "common/c2c_http/__init__.py",
        "common/c2c_http/gunicorn_conf.py",
        f"{service}/requirements.txt",
        f"{service}/{package}/__init__.py",
    } <= set(paths)
    assert not [p for p in paths if p.startswith(f"{other}/")]
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    # The two services never share a tag.
    tags = {
        name: context_tag(SERVICES_DIR, {**ARGS, "SERVICE": name}, only=("common", name))
        for name in (service, other)
    }
    assert tags[service] != tags[other]


def test_the_real_context_sends_only_what_the_images_copy() -> None:
    paths = context_paths(SERVICES_DIR)
    top = {path.split("/")[0] for path in paths}
    assert top == {"Dockerfile", ".dockerignore", "common", "internal", "external"}
    assert not [p for p in paths if p.startswith("common/") and not p.startswith("common/c2c_")]
    for service in ("internal", "external"):
        sent = {p.split("/")[1] for p in paths if p.startswith(f"{service}/")}
        # wheels/ only when scripts/wheelhouse.sh has filled it.
        assert sent - {"wheels"} == {"requirements.txt", f"{service}_service"}
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    assert not [p for p in paths if "/.wheels." in p]  # half-written wheelhouses


def test_common_is_no_service_for_the_wheelhouse_script() -> None:
    # scripts/wheelhouse.sh fills a wheelhouse for every services/*/requirements.txt.
    services = sorted(p.parent.name for p in SERVICES_DIR.glob("*/requirements.txt"))
    assert services == ["external", "internal"]
