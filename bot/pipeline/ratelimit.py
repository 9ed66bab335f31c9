"""WeCom's per-member limit on app messages: 30 a minute and 1,000 an hour per app and member.

Messages over it are dropped by WeCom *without an error* (DESIGN §10), so the sender must count for
itself and hold a message back before WeCom would drop it. Sliding windows, shared through Redis
when configured (several instances send to the same members), in-process otherwise.
"""
from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict, deque

from redis.asyncio import Redis
from redis.exceptions import RedisError

from store.redis import warn_degraded

log = logging.getLogger(__name__)

_RESERVE = """
local now, per_minute, per_hour = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600)
if redis.call('ZCARD', KEYS[1]) >= per_hour then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + 3600 - now)
end
local recent = redis.call('ZRANGEBYSCORE', KEYS[1], now - 60, '+inf', 'WITHSCORES', 'LIMIT', 0, per_minute)
if #recent >= per_minute * 2 then
  return tostring(tonumber(recent[2]) + 60 - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], 3700)
return '0'
"""


class MemberRateLimiter:
    def __init__(self, redis: Redis | None, prefix: str, per_minute: int, per_hour: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._local: defaultdict[str, deque[float]] = defaultdict(deque)
        self._script = redis.register_script(_RESERVE) if redis is not None else None

    async def reserve(self, recipient: str, now: float | None = None) -> float:
        """Take a send slot for this member: 0.0 if taken, else the seconds until one frees up."""
        now = time.time() if now is None else now
        if self._script is not None:
            try:
                wait = await self._script(keys=[f"{self.prefix}sends:{recipient}"],
                                          args=[now, self.per_minute, self.per_hour, f"{now}:{secrets.token_hex(4)}"])
                return max(0.0, float(wait))
            except RedisError as err:
                warn_degraded("per-member send limits counted in this process", err)
        return self._reserve_locally(recipient, now)

    def _reserve_locally(self, recipient: str, now: float) -> float:
        sends = self._local[recipient]
        while sends and sends[0] <= now - 3600:
            sends.popleft()
        if len(sends) >= self.per_hour:
            return sends[0] + 3600 - now
        recent = [t for t in sends if t > now - 60]
        if len(recent) >= self.per_minute:
            return recent[0] + 60 - now
        sends.append(now)
        return 0.0
