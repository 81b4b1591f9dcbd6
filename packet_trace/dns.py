"""One DNS question asked inside a container's network namespace, the way its resolver asks it.

Docker's embedded DNS listens on 127.0.0.11 in every container's namespace on a user-defined
network; a process put into that namespace with `nsenter --net=<sandbox key>` reaches it too, so
the trace asks external's own resolver for INTERNAL_URL's host without entering the container.
The query is a short stdlib-only script run by the host's python3 (nsenter changes only the
network namespace): it sends one A question and prints the raw answer in hex, which
packet_trace.parse.parse_dns_response reads.
"""

from __future__ import annotations

EMBEDDED_DNS = "127.0.0.11"

QUERY_SCRIPT = """\
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
query = struct.pack("!6H", 0xC2C, 0x0100, 1, 0, 0, 0) + labels + b"\\0" + struct.pack("!2H", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(query, (server, 53))
print(s.recv(4096).hex())
"""


def query_argv(name: str, server: str = EMBEDDED_DNS) -> list[str]:
    """The command that asks `server` for name's A records and prints the answer in hex."""
    return ["python3", "-I", "-c", QUERY_SCRIPT, name, server]
