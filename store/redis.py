"""Redis helpers. Redis is optional for one instance: every caller has an in-process or database
fallback, and a Redis outage degrades to that fallback (logged) instead of failing requests."""
from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def create_redis(url: str) -> Redis | None:
    if not url:
        return None
    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30,
                          max_connections=200)


class SharedKeys:
    """Namespaced Redis operations that never raise: None means "Redis did not answer"."""

    def __init__(self, redis: Redis | None, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    async def exists(self, key: str) -> bool:
        if self.redis is None:
            return False
        try:
            return bool(await self.redis.exists(self.prefix + key))
        except RedisError as err:
            log.warning("redis unavailable, falling back to the database: %s", type(err).__name__)
            return False

    async def get(self, key: str) -> str | None:
        if self.redis is None:
            return None
        try:
            value = await self.redis.get(self.prefix + key)
        except RedisError as err:
            log.warning("redis unavailable for a read: %s", type(err).__name__)
            return None
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.set(self.prefix + key, value, ex=ttl_seconds)
        except RedisError as err:
            log.warning("redis unavailable for a write: %s", type(err).__name__)

    async def delete(self, key: str) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.delete(self.prefix + key)
        except RedisError as err:
            log.warning("redis unavailable for a delete: %s", type(err).__name__)

    async def count_in_window(self, key: str, window_seconds: int) -> int | None:
        """Count one more hit in a fixed window shared by all instances; None without Redis."""
        if self.redis is None:
            return None
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(self.prefix + key)
                pipe.expire(self.prefix + key, window_seconds, nx=True)
                count, _ = await pipe.execute()
            return int(count)
        except RedisError as err:
            log.warning("redis unavailable for a rate limit: %s", type(err).__name__)
            return None
