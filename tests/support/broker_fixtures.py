"""Fixtures for a real mosquitto broker on 127.0.0.1 (see support.broker)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.broker import Mosquitto


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A started anonymous broker, fresh per test so retained state never leaks between tests."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture
def mosquitto_factory() -> Iterator[Callable[..., Mosquitto]]:
    """Start brokers with options (users, acl, tls...); all are stopped when the test ends."""
    brokers: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        broker = Mosquitto(**options)
        brokers.append(broker)
        return broker.start()

    yield make
    for broker in brokers:
        broker.close()
