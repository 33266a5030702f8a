"""Training and export of Barcelona's own models in SkyTNT's format (needs the train extra: torch)."""
