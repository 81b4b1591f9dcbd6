"""`make bench`: c2c measured side by side with the direct path and with docker compose.

One run on a Docker engine of the bench's own (a one-host lab): HTTP latency and throughput with
wrk from the engine host's network namespace (internal and external directly, the chain through
the published port on loopback and through the DNAT path), deploy times under Pulumi and under
docker compose (bench/docker-compose.yml: the same topology and images), and image sizes. It
prints a table and writes the numbers to .state/bench.json. `python -m bench --smoke` is the
short form CI runs so the bench cannot rot.
"""
