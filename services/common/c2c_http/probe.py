"""The image's health probe, ``python -m c2c_http.probe`` (services/Dockerfile HEALTHCHECK):
exits 0 when every gunicorn worker of *this* container answered ``GET /healthz`` with 200 on
the port gunicorn binds (PORT, else the service's default from its settings), else 1 with the
reason on stderr.

"This container" matters during a handover: the old and the new container of a service listen
on one port at once (SO_REUSEPORT) and the kernel picks a listener per connection, so an answer
on 127.0.0.1 may come from the old one. Each answer names its container and worker
(c2c_http.instance); the probe opens new connections until each of its own WEB_CONCURRENCY
workers has answered, and ignores the other container's answers. Only then is the new
container healthy, `pulumi up` goes on and the old one is stopped: by then every one of the
new container's workers accepts, not just listens.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
from collections.abc import Mapping

from c2c_http.instance import INSTANCE_HEADER, container_instance, parse_answerer
from c2c_http.settings import service_settings

# The probe's whole budget, in seconds: Docker kills it after 3 (the HEALTHCHECK's timeout).
PROBE_BUDGET = 2.0


def main(env: Mapping[str, str] = os.environ) -> int:
    _, settings = service_settings(env)
    own = container_instance()
    deadline = time.monotonic() + PROBE_BUDGET
    workers: set[int] = set()  # own workers that answered 200
    others = 0  # answers from another container (or a server that does not say)
    while len(workers) < settings.workers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(
                f"probe: {len(workers)} of {settings.workers} workers of this container "
                f"answered within {PROBE_BUDGET} s ({others} answers from elsewhere)",
                file=sys.stderr,
            )
            return 1
        try:
            status, answerer = _ask_healthz(settings.port, remaining)
        except TimeoutError:
            # The request had what was left of the budget: the loop says how far it got.
            continue
        except OSError as err:
            print(f"probe: 127.0.0.1:{settings.port}: {err}", file=sys.stderr)
            return 1
        who = parse_answerer(answerer) if answerer is not None else None
        if who is None or who[0] != own:
            others += 1
            continue
        if status != 200:
            print(f"probe: /healthz answered {status}", file=sys.stderr)
            return 1
        workers.add(who[1])
    return 0


def _ask_healthz(port: int, timeout: float) -> tuple[int, str | None]:
    """Status and INSTANCE_HEADER of one ``GET /healthz`` on a new connection."""
    # http.client: no proxy from the environment, no redirect followed. A new connection each
    # time, closed after the answer, so the kernel picks a listener anew.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()  # to the end, so that closing is a clean FIN, not a reset
        return response.status, response.getheader(INSTANCE_HEADER)
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
