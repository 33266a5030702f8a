"""Shared fixtures: each support module owns one kind of real resource (broker, JACK, sockets)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytest_plugins = [
    "support.net_fixtures",
    "support.broker_fixtures",
    "support.jack_fixtures",
]
