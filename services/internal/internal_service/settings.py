"""Settings of the internal service: only what every service has (c2c_http.settings)."""

from __future__ import annotations

from dataclasses import dataclass

from c2c_http.settings import Port, ServerSettings


@dataclass(frozen=True, kw_only=True)
class Settings(ServerSettings):
    port: Port = 8080
