"""Redis helpers. Redis is optional for one instance: every caller has an in-process or database
fallback, and a Redis outage degrades to that fallback (logged) instead of failing requests."""
from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
_last_warned: dict[str, float] = {}
DEGRADED_LOG_INTERVAL_SECONDS = 30.0


def warn_degraded(what: str, err: Exception) -> None:
    """Say that Redis is unavailable and what falls back, once per 30 s per kind: an outage under
    load would otherwise write one line per request."""
    now = time.monotonic()
    if now - _last_warned.get(what, float("-inf")) >= DEGRADED_LOG_INTERVAL_SECONDS:
        _last_warned[what] = now
        log.warning("redis unavailable (%s): %s; running degraded", type(err).__name__, what)


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
            warn_degraded("de-duplication falls back to the database", err)
            return False

    async def get(self, key: str) -> str | None:
        if self.redis is None:
            return None
        try:
            value = await self.redis.get(self.prefix + key)
        except RedisError as err:
            warn_degraded("shared reads fall back to this process", err)
            return None
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.set(self.prefix + key, value, ex=ttl_seconds)
        except RedisError as err:
            warn_degraded("shared writes skipped", err)

    async def delete(self, key: str) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.delete(self.prefix + key)
        except RedisError as err:
            warn_degraded("shared deletes skipped", err)

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
            warn_degraded("rate limits counted in this process", err)
            return None


async def warn_if_not_durable(redis: Redis | None) -> None:
    """Clicks wait in a Redis stream until they are written: a Redis that keeps nothing on disk
    loses those of the last moments when it crashes. Say so once at start-up."""
    if redis is None:
        return
    try:
        appendonly = (await redis.config_get("appendonly")).get("appendonly")
    except RedisError:
        return  # managed Redis often forbids CONFIG; nothing to say then
    if appendonly != "yes":
        log.warning("Redis keeps no append-only file: clicks buffered in it when it crashes are lost; "
                    "run it with appendonly yes (appendfsync everysec)")
