from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from c2c_http.log import stdout_handler
from tests.support.http_stub import request_lines, stub_upstream

__all__ = ["request_log", "stub_upstream"]  # fixtures: pytest finds them in this conftest

RequestLog = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def request_log() -> Iterator[RequestLog]:
    """Log at INFO through c2c_http.log's handler, as gunicorn's LOGGING does, into a buffer
    instead of stdout (the integration tests read the real stdout); the returned function
    gives the request lines written so far (every line must be JSON)."""
    root, buffer = logging.getLogger(), io.StringIO()
    handler, level = stdout_handler(), root.level
    handler.setStream(buffer)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: request_lines(buffer.getvalue())
    root.removeHandler(handler)
    root.setLevel(level)
