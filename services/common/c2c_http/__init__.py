"""What both Flask services share: JSON-only answers, one JSON logging path, the settings
schema, the gunicorn configuration and the health probe.

Copied into each service's image next to that service's package (services/Dockerfile). Kept
free of imports here, so that the probe loads no more than the settings.
"""
