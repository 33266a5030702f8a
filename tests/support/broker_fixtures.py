"""Fixtures for a real mosquitto broker (filled in by the broker support module)."""
