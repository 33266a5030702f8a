"""Shared fixtures: each support module owns one kind of real resource (broker, JACK, sockets)."""

import os
import sys
from pathlib import Path

from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytest_plugins = [
    "support.net_fixtures",
    "support.broker_fixtures",
    "support.jack_fixtures",
    "support.output_fixtures",
]

# Property tests draw the same examples on every run unless HYPOTHESIS_PROFILE=explore: a CI run is
# then repeatable, and a search for new counterexamples is a deliberate run, not a red build.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
