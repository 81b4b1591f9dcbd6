"""Settings as one declarative schema: frozen dataclasses whose fields name, in their
Annotated type, the environment variable they are read from and its bounds; the field's
default is the setting's default. ``from_env`` reads them all and refuses to start with every
bad variable reported at once, one line each naming it, instead of misbehaving later.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Annotated, Any, Self, get_type_hints

# ASCII digits only: int() alone would also take "+8", "1_000" or digits of other scripts.
_INTEGER = re.compile(r"[0-9]+")


class SettingsError(ValueError):
    """Environment variables hold values the service refuses to start with."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems  # one line per bad variable


@dataclass(frozen=True)
class Env:
    """Where a field comes from: the variable, what a valid value looks like, the parser
    (None for a refused value) and, for a field without default, an example value."""

    name: str
    expected: str
    parse: Callable[[str], object]
    example: str | None = None


def integer(name: str, low: int, high: int) -> Env:
    def parse(raw: str) -> int | None:
        return int(raw) if _INTEGER.fullmatch(raw) and low <= int(raw) <= high else None

    return Env(name, f"an integer from {low} to {high}", parse)


def seconds(name: str, low: float, high: float) -> Env:
    def parse(raw: str) -> float | None:
        try:
            value = float(raw)
        except ValueError:
            return None
        # NaN fails both comparisons, so it is refused too (and infinity lies out of bounds).
        return value if low <= value <= high else None

    return Env(name, f"a number of seconds from {low} to {high}", parse)


# Every service declares its own default: `port: Port = 8080`.
Port = Annotated[int, integer("PORT", 1, 65535)]


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """What gunicorn needs from every service; a service's Settings extends it."""

    port: Port
    workers: Annotated[int, integer("WEB_CONCURRENCY", 1, 32)] = 2
    threads: Annotated[int, integer("GUNICORN_THREADS", 1, 64)] = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """Every field from its variable (blank counts as unset), read once at startup."""
        hints = get_type_hints(cls, include_extras=True)
        values: dict[str, Any] = {}
        problems: list[str] = []
        for field in fields(cls):
            metadata = getattr(hints[field.name], "__metadata__", ())
            source = next((m for m in metadata if isinstance(m, Env)), None)
            if source is None:
                raise TypeError(f"{cls.__qualname__}.{field.name} names no environment variable")
            required = field.default is MISSING
            if required and source.example is None:
                raise TypeError(f"{cls.__qualname__}.{field.name} needs a default")
            raw = env.get(source.name, "").strip()
            if not raw:
                if required:
                    problems.append(f"{source.name} is required, e.g. {source.example}")
                continue
            value = source.parse(raw)
            if value is None:
                problems.append(f"{source.name}={raw!r}: expected {source.expected}")
            else:
                values[field.name] = value
        if problems:
            raise SettingsError(problems)
        return cls(**values)


def service_settings(env: Mapping[str, str] = os.environ) -> tuple[str, ServerSettings]:
    """The package C2C_SERVICE names (the image sets it, e.g. ``internal_service``) and its
    ``settings.Settings`` read from ``env``; any failure stops with one line per problem."""
    package = env.get("C2C_SERVICE", "").strip()
    if not package.isidentifier():
        raise SystemExit(f"c2c_http: C2C_SERVICE={package!r}: expected a service package name")
    try:
        settings_type = importlib.import_module(f"{package}.settings").Settings
    except (ImportError, AttributeError) as err:
        raise SystemExit(f"c2c_http: C2C_SERVICE={package!r}: {err}") from None
    if not (isinstance(settings_type, type) and issubclass(settings_type, ServerSettings)):
        raise SystemExit(f"c2c_http: {package}.settings.Settings is not a ServerSettings")
    try:
        return package, settings_type.from_env(env)
    except SettingsError as err:
        # One clear line per variable instead of a traceback.
        lines = (f"{package}: invalid setting: {problem}" for problem in err.problems)
        raise SystemExit("\n".join(lines)) from None
