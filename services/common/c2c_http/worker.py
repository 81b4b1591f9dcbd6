"""gunicorn's gthread worker, with one change for handovers: a stopping worker closes its
listening sockets at once instead of at its very end.

With reuse_port (gunicorn_conf) each worker owns its listening socket, in one SO_REUSEPORT
group with every other worker on the port, the next container's included. gthread stops
accepting on SIGTERM but keeps its sockets open until its last connection is done (kept-alive
ones linger up to 2 s), and the kernel keeps queueing new connections on them meanwhile, only
to hand them over (net.ipv4.tcp_migrate_req=1) when they close: seconds of delay. Closed at
once, new connections go to the listeners that accept, and the few already queued move there
right away. Requests in flight and kept-alive connections are still finished as gthread does
(the next request on one is answered with ``Connection: close``).
"""

from __future__ import annotations

# gunicorn ships no type information.
from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]


class HandoverWorker(ThreadWorker):  # type: ignore[misc]  # an untyped base class
    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        # gthread calls this with False when the worker stops (alive is False by then), and
        # when it holds its most connections (then it listens again later: sockets stay).
        if not enabled and not self.alive:
            for listener in self.sockets:
                listener.close()  # gunicorn's close() is idempotent: run() closes them again
