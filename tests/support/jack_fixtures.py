"""Fixtures for a real JACK server with the dummy driver."""
