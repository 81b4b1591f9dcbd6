"""The c2c stack: read the `c2c:*` config, declare the service pair, export where it lives.

Config problems raise c2c_infra.ConfigError (a pulumi.RunError) before any resource is
declared, which the language host reports as plain `error: c2c:<key>: <why>` lines.
"""

import pulumi

from c2c_infra import ServicePair, ServicePairArgs, load_settings

settings = load_settings(pulumi.Config("c2c"), pulumi.get_stack())
pair = ServicePair("c2c", ServicePairArgs(settings=settings))
for name, value in pair.outputs.items():
    pulumi.export(name, value)
