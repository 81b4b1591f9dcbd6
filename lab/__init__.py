"""Simulated hosts on one machine: each a network namespace on an underlay bridge (198.18.0.0/15,
RFC 2544) with a Docker engine of its own. Shared by the multi-host lab (`make lab`), the e2e
suite's own engine, and an engine under test; see lab.core for the API and `python -m lab -h`."""

from lab.core import OFFLINE_BASE_IMAGE, Host, Lab
from lab.engine import EngineSpec
from lab.naming import LabError, LabNames
from lab.netns import nsenter_argv, run_in_netns

__all__ = [
    "OFFLINE_BASE_IMAGE",
    "EngineSpec",
    "Host",
    "Lab",
    "LabError",
    "LabNames",
    "nsenter_argv",
    "run_in_netns",
]
