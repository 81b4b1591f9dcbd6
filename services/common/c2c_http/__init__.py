"""What both Flask services share: JSON-only answers, the request log line, bounded settings
from the environment and the gunicorn configuration.

Copied into each service's image next to that service's package (services/Dockerfile). Kept
free of imports here, so that loading the gunicorn config does not pull in Flask.
"""
