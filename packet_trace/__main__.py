"""`python -m packet_trace`: see packet_trace.cli."""

import sys

from packet_trace.cli import main

sys.exit(main())
