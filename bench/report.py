"""The bench's results as rows (JSON-able dicts) and as a text table (pure).

The JSON document (.state/bench.json) is the record; the table is rendered from it alone, so a
stored document can be printed again (`python -m bench --show`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import median, ratio
from bench.wrk import WrkReport

SCHEMA = 1

# HTTP paths, in table order: key -> label. The first is the reference of every ratio.
HTTP_PATHS = {
    "internal": "internal directly",
    "external": "external directly",
    "loopback": "chain via loopback (docker-proxy)",
    "dnat": "chain via DNAT (host address)",
}
REFERENCE_PATH = "internal"
# Per HTTP row: c1_* at 1 connection, c50_* at 50 (medians over the rounds).
HTTP_METRICS = ("c1_p50_ms", "c1_p99_ms", "c50_rps", "c50_p50_ms", "c50_p99_ms")

# Deploy steps, in table order: key -> label. Compose has no preview.
DEPLOY_STEPS = {
    "up": "up from nothing, until healthy",
    "noop_up": "no-op up",
    "preview": "preview",
    "down": "destroy / down",
}
TOOLS = ("pulumi", "compose")


@dataclass(frozen=True)
class PathRuns:
    """Every wrk run of one HTTP path: at 1 connection and at 50, one per round."""

    url: str
    one_connection: Sequence[WrkReport]
    fifty_connections: Sequence[WrkReport]


def http_row(path: str, runs: PathRuns) -> dict[str, Any]:
    """Medians over the rounds of one path; errors are summed (any is worth seeing)."""
    one, fifty = runs.one_connection, runs.fifty_connections
    return {
        "path": path,
        "label": HTTP_PATHS[path],
        "url": runs.url,
        "rounds": min(len(one), len(fifty)),
        "errors": sum(r.errors for r in [*one, *fifty]),
        "c1_p50_ms": median([r.latency_ms[50] for r in one]),
        "c1_p99_ms": median([r.latency_ms[99] for r in one]),
        "c50_rps": median([r.requests_per_second for r in fifty]),
        "c50_p50_ms": median([r.latency_ms[50] for r in fifty]),
        "c50_p99_ms": median([r.latency_ms[99] for r in fifty]),
    }


def http_rows(runs: Mapping[str, PathRuns]) -> list[dict[str, Any]]:
    """One row per path of HTTP_PATHS, each with its metrics as ratios to the reference path's."""
    rows = [http_row(path, runs[path]) for path in HTTP_PATHS]
    reference = rows[0]
    for row in rows:
        row["ratio_to_internal"] = {m: ratio(row[m], reference[m]) for m in HTTP_METRICS}
    return rows


def deploy_rows(samples: Mapping[str, Mapping[str, Sequence[float]]]) -> list[dict[str, Any]]:
    """samples[tool][step] -> seconds of each run; one row per step, medians and their ratio."""
    rows = []
    for step, label in DEPLOY_STEPS.items():
        row: dict[str, Any] = {"step": step, "label": label}
        for tool in TOOLS:
            runs = list(samples.get(tool, {}).get(step, []))
            row[f"{tool}_runs_s"] = runs
            row[f"{tool}_s"] = median(runs) if runs else None
        row["pulumi_over_compose"] = ratio(row["pulumi_s"], row["compose_s"])
        rows.append(row)
    return rows


def image_rows(sizes: Mapping[str, Mapping[str, int]], base_bytes: int) -> list[dict[str, Any]]:
    """sizes[tool][service] -> bytes; per service its size under each tool and over the base."""
    services = sorted({service for per_tool in sizes.values() for service in per_tool})
    rows = []
    for service in services:
        row: dict[str, Any] = {"image": service}
        for tool in TOOLS:
            size = sizes.get(tool, {}).get(service)
            row[f"{tool}_mb"] = size / 1e6 if size is not None else None
        row["over_base_mb"] = (sizes["pulumi"][service] - base_bytes) / 1e6
        rows.append(row)
    return rows


# --- the table ----------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _with_ratio(value: float, factor: float | None, digits: int) -> str:
    return f"{value:.{digits}f}" + ("" if factor is None else f" x{factor:.2f}")


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_table(doc: Mapping[str, Any]) -> str:
    machine = doc["machine"]
    engine = machine["engine"]
    load = doc["load_average"]
    settings = doc["settings"]
    lines = [
        f"c2c bench ({doc['mode']}), {doc['started_at']}, took {doc['duration_s']:.0f} s",
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, kernel {machine['kernel']}",
        f"engine: {engine['kind']} {engine['version']} (API {engine['api_version']}); "
        f"{machine['pulumi']}; docker-compose {machine['docker_compose']}; {machine['wrk']}",
        "load average (1/5/15 min): "
        + "; ".join(f"{when} {' '.join(f'{v:.2f}' for v in load[when])}" for when in load),
        "",
        f"HTTP, from the engine host's network namespace: wrk {settings['wrk_seconds']} s per run, "
        f"median of {settings['wrk_rounds']} rounds; xN = this / internal directly",
    ]
    http_header = [
        "path",
        "1 conn p50 ms",
        "1 conn p99 ms",
        "50 conn req/s",
        "50 conn p50 ms",
        "50 conn p99 ms",
        "errors",
    ]
    http_table = []
    for row in doc["http"]:
        ratios = row["ratio_to_internal"] if row["path"] != REFERENCE_PATH else {}
        http_table.append(
            [
                f"{row['label']} {row['url']}",
                *(
                    _with_ratio(row[m], ratios.get(m), 0 if m == "c50_rps" else 2)
                    for m in HTTP_METRICS
                ),
                str(row["errors"]),
            ]
        )
    lines += _grid(http_header, http_table)

    containers = doc["containers"]
    lines += [
        "",
        f"deploy, seconds, median of {settings['deploy_runs']} (build cache warm); containers "
        f"by c2c labels: pulumi {containers['pulumi']}, compose {containers['compose']}",
    ]
    lines += _grid(
        ["step", "pulumi", "compose", "pulumi / compose"],
        [
            [
                row["label"],
                _num(row["pulumi_s"]),
                _num(row["compose_s"]),
                _num(row["pulumi_over_compose"]),
            ]
            for row in doc["deploy"]
        ],
    )

    images = doc["images"]
    lines += ["", f"images, MB (base {images['base']} {images['base_mb']:.1f} MB)"]
    lines += _grid(
        ["image", "pulumi", "compose", "over base"],
        [
            [
                row["image"],
                _num(row["pulumi_mb"], 1),
                _num(row["compose_mb"], 1),
                f"{row['over_base_mb']:+.1f}",
            ]
            for row in images["services"]
        ],
    )
    return "\n".join(lines)
