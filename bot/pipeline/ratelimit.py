"""WeCom's per-member limit on app messages: 30 a minute and 1,000 an hour per app and member.

Messages over it are dropped by WeCom *without an error* (DESIGN §10), so the sender must count for
itself and hold a message back before WeCom would drop it. Sliding windows, shared through Redis
when configured (several instances send to the same members), in-process otherwise.
"""
from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from store.redis import LocalKeys, SharedKeys

HOUR, MINUTE = 3600, 60


class MemberRateLimiter:
    def __init__(self, redis: Redis | None, prefix: str, per_minute: int, per_hour: int) -> None:
        # Its own in-process keys, one per member who was sent to in the last hour at the most.
        self.shared = SharedKeys(redis, prefix, LocalKeys(max_items=100_000))
        self.per_minute = per_minute
        self.per_hour = per_hour

    async def reserve(self, recipient: str, now: float | None = None) -> float:
        """Take a send slot for this member: 0.0 if taken, else the seconds until one frees up."""
        [wait] = await self.reserve_many([recipient], now)
        return wait

    async def reserve_many(self, recipients: list[str], now: float | None = None) -> list[float]:
        """`reserve` for each recipient in order, in one round trip: a batch of sends costs one call."""
        now = time.time() if now is None else now
        limits = [(self.per_hour, HOUR), (self.per_minute, MINUTE)]
        return await self.shared.reserve_many_in_windows([f"sends:{r}" for r in recipients], limits, now,
                                                         degraded="per-member send limits counted in this process")


class SendSlots:
    """How many sends one instance has in flight. WeCom answers 45033 when an app calls one API
    with too many requests at once (it does not say how many): each 45033 halves the number, and
    every GROW_AFTER × the current number of successful sends in a row gives one slot back, up to the
    configured ceiling (additive increase, multiplicative decrease). Slow growth: each probe past
    WeCom's limit costs a refused call and a pause."""

    GROW_AFTER = 8

    def __init__(self, ceiling: int) -> None:
        self.ceiling = self.limit = max(1, ceiling)
        self.busy = 0
        self._streak = 0
        self._freed = asyncio.Event()

    async def acquire(self) -> None:
        while self.busy >= self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.busy += 1

    def release(self) -> None:
        self.busy -= 1
        self._freed.set()

    def succeeded(self) -> None:
        self._streak += 1
        if self._streak >= self.limit * self.GROW_AFTER and self.limit < self.ceiling:
            self.limit += 1
            self._streak = 0
            self._freed.set()

    def too_many(self) -> None:
        self.limit = max(1, self.limit // 2)
        self._streak = 0
