"""scripts/wheelhouse.sh: requirement parsing, the up-to-date check and its error paths."""

from __future__ import annotations

from pathlib import Path

from tests.unit.scripts.scripts_harness import error_lines, run_script, source_and_run

REQUIREMENTS = """\
# pinned closure
Flask==3.1.3  # web framework
gunicorn==27.0.1 \\
    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000
zope.interface==7.2 ; python_version >= "3.8"
requests[socks]==2.34.2
--find-links /wheels

"""

# Pip offline settings that make any index access fail at once on loopback.
NO_INDEX_ENV = {
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_RETRIES": "0",
    "PIP_TIMEOUT": "2",
    "PIP_NO_CACHE_DIR": "1",
}


def _pinned(req: Path) -> list[str]:
    result = source_and_run("wheelhouse.sh", 'pinned_requirements "$REQ"', env={"REQ": str(req)})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_pinned_requirements_normalises_names_and_drops_options(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(REQUIREMENTS)
    assert _pinned(req) == [
        "flask 3.1.3",
        "gunicorn 27.0.1",
        "zope-interface 7.2",
        "requests 2.34.2",
    ]


def test_pinned_requirements_flags_unpinned_lines(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("flask==3.1.3\nsix>=1.0\nclick\n")
    assert _pinned(req) == ["flask 3.1.3", "UNPINNED six>=1.0", "UNPINNED click"]


def test_present_wheels_reads_name_and_version_from_file_names(tmp_path: Path) -> None:
    for name in (
        "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "zope_interface-7.2-cp311-cp311-manylinux_2_17_x86_64.whl",
        "flask-3.1.3-py3-none-any.whl",
        "not-a-wheel.tar.gz",
    ):
        (tmp_path / name).write_bytes(b"")
    result = source_and_run("wheelhouse.sh", 'present_wheels "$DIR"', env={"DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        "flask 3.1.3",
        "markupsafe 3.0.2",
        "zope-interface 7.2",
    ]


def _filled_service(tmp_path: Path) -> Path:
    """A service dir whose wheelhouse looks complete: a wheel per pin and a matching stamp."""
    service = tmp_path / "svc"
    wheels = service / "wheels"
    wheels.mkdir(parents=True)
    (service / "requirements.txt").write_text("flask==3.1.3\nMarkupSafe==3.0.2\n")
    (wheels / "flask-3.1.3-py3-none-any.whl").write_bytes(b"")
    (wheels / "markupsafe-3.0.2-cp311-cp311-manylinux2014_x86_64.whl").write_bytes(b"")
    stamp = source_and_run(
        "wheelhouse.sh", 'stamp_of "$REQ"', env={"REQ": str(service / "requirements.txt")}
    )
    assert stamp.returncode == 0, stamp.stderr
    (wheels / ".c2c-wheelhouse").write_text(stamp.stdout)
    return service


def _up_to_date(service: Path) -> bool:
    result = source_and_run(
        "wheelhouse.sh",
        'up_to_date "$SVC/requirements.txt" "$SVC/wheels"',
        env={"SVC": str(service)},
    )
    return result.returncode == 0


def test_up_to_date_when_every_pin_has_a_wheel(tmp_path: Path) -> None:
    assert _up_to_date(_filled_service(tmp_path))


def test_not_up_to_date_when_a_wheel_is_missing(tmp_path: Path) -> None:
    service = _filled_service(tmp_path)
    (service / "wheels" / "flask-3.1.3-py3-none-any.whl").unlink()
    assert not _up_to_date(service)


def test_not_up_to_date_when_a_pin_changes(tmp_path: Path) -> None:
    service = _filled_service(tmp_path)
    (service / "requirements.txt").write_text("flask==3.1.2\nMarkupSafe==3.0.2\n")
    assert not _up_to_date(service)


def test_filled_wheelhouse_is_skipped_without_touching_the_index(tmp_path: Path) -> None:
    service = _filled_service(tmp_path)
    before = sorted(p.name for p in (service / "wheels").iterdir())
    result = run_script(
        "wheelhouse.sh",
        str(service),
        env={**NO_INDEX_ENV, "C2C_STATE_DIR": str(tmp_path / "state")},
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in (service / "wheels").iterdir()) == before


def test_failed_download_keeps_the_old_wheelhouse_and_says_why(tmp_path: Path) -> None:
    service = _filled_service(tmp_path)
    (service / "requirements.txt").write_text("flask==3.1.2\n")
    result = run_script(
        "wheelhouse.sh",
        str(service),
        env={**NO_INDEX_ENV, "C2C_STATE_DIR": str(tmp_path / "state")},
    )
    assert result.returncode == 1
    assert error_lines(result.stderr, "wheelhouse.sh") == [
        f"wheelhouse: error: pip download failed for {service}/requirements.txt"
    ]
    assert (service / "wheels" / "flask-3.1.3-py3-none-any.whl").exists()
    assert not list(service.glob(".wheels.*")), "temporary download dir left behind"


def test_missing_requirements_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_script(
        "wheelhouse.sh", str(tmp_path), env={"C2C_STATE_DIR": str(tmp_path / "state")}
    )
    assert result.returncode == 1
    assert error_lines(result.stderr, "wheelhouse.sh") == [
        f"wheelhouse: error: {tmp_path}/requirements.txt not found"
    ]
