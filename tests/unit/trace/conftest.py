"""Fixtures for the trace's unit tests: replayed captures (see trace_fixtures.py)."""

from __future__ import annotations

import pytest

from tests.unit.trace.trace_fixtures import LOOPBACK_ONLY, REAL, FixtureSources


@pytest.fixture
def dev_sources() -> FixtureSources:
    """The real dev stack, found by its Docker labels, as `make trace` runs."""
    return FixtureSources(REAL)


@pytest.fixture
def loopback_only_sources() -> FixtureSources:
    """The stand-in stack whose port is published on 127.0.0.1:18090 only."""
    return FixtureSources(LOOPBACK_ONLY)
