"""Fixtures for the trace's unit tests: replayed captures (see trace_fixtures.py)."""

from __future__ import annotations

import pytest

from tests.unit.trace.trace_fixtures import FixtureSources


@pytest.fixture
def loopback_sources() -> FixtureSources:
    return FixtureSources("standin-loopback")


@pytest.fixture
def allif_sources() -> FixtureSources:
    return FixtureSources("standin-allif")
