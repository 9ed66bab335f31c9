"""WeCom's per-member limit on app messages: 30 a minute and 1,000 an hour per app and member.

Messages over it are dropped by WeCom *without an error* (DESIGN §10), so the sender must count for
itself and hold a message back before WeCom would drop it. Sliding windows, shared through Redis
when configured (several instances send to the same members), in-process otherwise.
"""
from __future__ import annotations

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
        now = time.time() if now is None else now
        limits = [(self.per_hour, HOUR), (self.per_minute, MINUTE)]
        return await self.shared.reserve_in_windows(f"sends:{recipient}", limits, now,
                                                    degraded="per-member send limits counted in this process")
