"""The c2c Pulumi program's library: validated stack settings and the ServicePair component."""

from c2c_infra.component import ServicePair, ServicePairArgs
from c2c_infra.config import ConfigError, StackSettings, load_settings

__all__ = ["ConfigError", "ServicePair", "ServicePairArgs", "StackSettings", "load_settings"]
