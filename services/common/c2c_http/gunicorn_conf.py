"""gunicorn settings of every service: ``gunicorn --config python:c2c_http.gunicorn_conf``.

C2C_SERVICE names the service's package (the image sets it, e.g. ``internal_service``). That
package provides ``create_app()`` and ``settings.Settings`` (a ServerSettings), read here once
in the master so that a bad setting stops the start with one line, before any worker forks.
"""

from __future__ import annotations

import importlib
import os

from c2c_http.settings import ServerSettings, SettingsError


def _service_settings() -> tuple[str, ServerSettings]:
    package = os.environ.get("C2C_SERVICE", "").strip()
    if not package.isidentifier():
        raise SystemExit(f"c2c_http: C2C_SERVICE={package!r}: expected a service package name")
    try:
        settings_type = importlib.import_module(f"{package}.settings").Settings
    except (ImportError, AttributeError) as err:
        raise SystemExit(f"c2c_http: C2C_SERVICE={package!r}: {err}") from None
    if not (isinstance(settings_type, type) and issubclass(settings_type, ServerSettings)):
        raise SystemExit(f"c2c_http: {package}.settings.Settings is not a ServerSettings")
    try:
        return package, settings_type.from_env()
    except SettingsError as err:
        # One clear line instead of gunicorn's "failed to read config" traceback.
        raise SystemExit(f"{package}: invalid setting: {err}") from None


_package, _settings = _service_settings()

wsgi_app = f"{_package}:create_app()"
# All interfaces of the container: the Docker network and port mapping decide who gets in.
bind = [f"0.0.0.0:{_settings.port}"]
workers = _settings.workers
# gthread keeps connections alive (sync workers close each one after a request), so clients
# such as external's pooled session to internal do not reconnect for every request.
worker_class = "gthread"
threads = _settings.threads
keepalive = 5
# Heartbeat files go to a tmpfs: the root filesystem is read-only in the container.
worker_tmp_dir = "/dev/shm"  # noqa: S108 - gunicorn's own heartbeat files, per worker
control_socket_disable = True  # it would be created under $HOME, read-only too
accesslog = None  # the app logs each request itself
errorlog = "-"
timeout = 30
graceful_timeout = 5  # docker stop waits 10 s before SIGKILL
forwarded_allow_ips = ""  # trust no proxy headers: client_ip is the real peer
