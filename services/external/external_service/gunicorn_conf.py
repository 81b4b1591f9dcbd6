"""gunicorn settings: ``gunicorn --config python:external_service.gunicorn_conf``."""

from __future__ import annotations

from external_service.settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as err:
    # One clear line instead of gunicorn's "failed to read config" traceback.
    raise SystemExit(f"external_service: invalid setting: {err}") from None

wsgi_app = "external_service:create_app()"
bind = [f"0.0.0.0:{_settings.port}"]
workers = _settings.workers
# gthread keeps client connections alive (sync workers close each one after a request).
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
