"""Fixtures for the trace's unit tests: replayed captures (see trace_fixtures.py)."""

from __future__ import annotations

import pytest

from tests.unit.trace.trace_fixtures import LOOPBACK_ONLY, REAL, FixtureSources, dev_outputs


@pytest.fixture
def dev_sources() -> FixtureSources:
    """The real dev stack, with its outputs from `pulumi stack output`, as `make trace` runs."""
    return FixtureSources(REAL, outputs=dev_outputs())


@pytest.fixture
def dev_labels_sources() -> FixtureSources:
    """The real dev stack without the pulumi CLI: the trace rebuilds the outputs from Docker."""
    return FixtureSources(REAL)


@pytest.fixture
def loopback_only_sources() -> FixtureSources:
    """The stand-in stack whose port is published on 127.0.0.1:18090 only."""
    return FixtureSources(LOOPBACK_ONLY)
