"""Settings of the internal service, read once from the environment (c2c_http.settings:
bounded values, one error naming a bad variable)."""

from __future__ import annotations

from dataclasses import dataclass

from c2c_http.settings import ServerSettings, SettingsError

__all__ = ["Settings", "SettingsError"]


@dataclass(frozen=True, kw_only=True)
class Settings(ServerSettings):
    port: int = 8080  # keep equal to the image's default (services/Dockerfile, port-internal)
