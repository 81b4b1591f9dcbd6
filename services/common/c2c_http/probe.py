"""The image's health probe, ``python -m c2c_http.probe`` (services/Dockerfile HEALTHCHECK):
exits 0 when ``GET /healthz`` answers 200 on the port gunicorn binds (PORT, else the service's
default from its settings), else 1 with the reason on stderr.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping

from c2c_http.settings import service_settings


def main(env: Mapping[str, str] = os.environ) -> int:
    _, settings = service_settings(env)
    # http.client: no proxy from the environment, no redirect followed. Docker waits 3 s.
    conn = http.client.HTTPConnection("127.0.0.1", settings.port, timeout=2.0)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()  # to the end, so that closing is a clean FIN, not a reset
        status = response.status
    except OSError as err:
        print(f"probe: 127.0.0.1:{settings.port}: {err}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"probe: /healthz answered {status}", file=sys.stderr)
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
