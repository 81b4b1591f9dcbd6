"""gunicorn settings of every service: ``gunicorn --config python:c2c_http.gunicorn_conf``.

C2C_SERVICE names the service's package (the image sets it, e.g. ``internal_service``); its
settings are read here once in the master, so that bad settings stop the start with one line
each, before any worker forks.
"""

from __future__ import annotations

import importlib

from c2c_http.log import LOGGING, NoAccessLogger
from c2c_http.settings import service_settings

_package, _settings = service_settings()
# Imported in the master so that the workers share the app's modules after the fork.
importlib.import_module(f"{_package}.app")

wsgi_app = f"{_package}.app:create_app()"
# All interfaces of the container: the Docker network and port mapping decide who gets in.
bind = [f"0.0.0.0:{_settings.port}"]
workers = _settings.workers
# gthread keeps connections alive (sync workers close each one after a request), so clients
# such as external's pooled session to internal do not reconnect for every request. This
# subclass of it lets go of its listening socket as soon as it stops (c2c_http.worker).
worker_class = "c2c_http.worker.HandoverWorker"
# SO_REUSEPORT, one listening socket per worker: the next container of the service (in the same
# network namespace, docs/zero-downtime.md) listens on the port beside this one before this
# one stops, so a redeploy never leaves the port without a listener.
reuse_port = True
threads = _settings.threads
keepalive = 5
# Heartbeat files go to a tmpfs: the root filesystem is read-only in the container.
worker_tmp_dir = "/dev/shm"  # noqa: S108 - gunicorn's own heartbeat files, per worker
control_socket_disable = True  # it would be created under $HOME, read-only too
accesslog = None  # the app logs each request itself
logger_class = NoAccessLogger
logconfig_dict = LOGGING
timeout = 30
graceful_timeout = 5  # docker stop waits 10 s before SIGKILL
forwarded_allow_ips = ""  # trust no proxy headers: client_ip is the real peer
