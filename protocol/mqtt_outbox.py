"""The MQTT transport's outbox: QoS >= 1 messages waiting for the broker, sent in order.

A plan or control change made while the link is down must be sent when it returns, so it waits here
rather than failing; a queued retained message replaces an older one on its topic (only the latest
state matters). The outbox is bounded: a link down for long pushes the oldest out, and the transport
counts them as dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import NamedTuple

log = logging.getLogger("protocol.transport_mqtt")
log = logging.getLogger("protocol.transport_mqtt")  # its warnings are the transport's

class Outgoing(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttOutbox:
    """Bounded and ordered; `next` waits for a message, `wait_empty` until the last one went out."""

    def __init__(self, limit: int) -> None:
        self._items: deque[Outgoing] = deque()
        self._limit = limit
        self._ready, self._empty = asyncio.Event(), asyncio.Event()
        self._empty.set()
        self._warned_full = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing, *, front: bool = False) -> int:
        """Queue `item` (`front`: one that failed to send, to go first); returns how many of the
        oldest were pushed out of a full outbox."""
        if item.retain:
            stale = [queued for queued in self._items if queued.retain and queued.topic == item.topic]
            if front and stale:
                return 0  # a newer state for this topic is already queued; the failed one is obsolete
            for queued in stale:
                self._items.remove(queued)
        (self._items.appendleft if front else self._items.append)(item)
        dropped = 0
        while len(self._items) > self._limit:
            self._items.popleft()
            dropped += 1
            if not self._warned_full:
                self._warned_full = True
                log.warning("MQTT outbox full (%d): dropping the oldest; counted in stats", self._limit)
        self._empty.clear()
        self._ready.set()
        return dropped

    async def next(self) -> Outgoing:
        """The oldest message, once there is one."""
        while not self._items:
            self._empty.set()
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    async def wait_empty(self) -> None:
        """Until every message queued has been taken and the sender came back for more."""
        await self._empty.wait()
