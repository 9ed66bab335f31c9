"""Shared state: Redis when configured, in-process otherwise. Redis is optional for one instance;
with several it is what they share. Every operation of SharedKeys has one Redis implementation and
one in-process one (LocalKeys), and a Redis outage degrades to the latter (logged) instead of
failing requests."""
from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
_last_warned: dict[str, float] = {}
T = TypeVar("T")
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


# One call reserves for many keys (a batch of sends costs one round trip, not one each); a key that
# comes twice sees its first reservation. ARGV: now, a unique prefix for entries, the keys' expiry, the
# score up to which entries are dropped, then (limit, window, exclusive lower bound) per window,
# checked in the caller's order. Answers each key's wait ('0': reserved).
_SLIDING_RESERVE = """
local waits = {}
for k = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', ARGV[4])
  local wait = '0'
  for i = 5, #ARGV, 3 do
    local limit, window = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    local count = redis.call('ZCOUNT', KEYS[k], ARGV[i + 2], '+inf')
    if count >= limit then
      -- the entry whose leaving frees a slot; read alone, so a 150,000-an-hour window stays cheap
      local oldest = redis.call('ZRANGEBYSCORE', KEYS[k], ARGV[i + 2], '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
      wait = tostring(tonumber(oldest[2]) + window - tonumber(ARGV[1]))
      break
    end
  end
  if wait == '0' then
    redis.call('ZADD', KEYS[k], ARGV[1], ARGV[2] .. ':' .. k)
    redis.call('EXPIRE', KEYS[k], ARGV[3])
  end
  waits[k] = wait
end
return waits
"""
# Sliding-window entries outlive their longest window by this much, so a key is never dropped
# while one of its entries can still count.
_WINDOW_SLACK_SECONDS = 100


class LocalKeys:
    """What SharedKeys keeps in this process: values that expire, and at most max_items of them
    (the least recently written go first), so memory is bounded whatever the traffic."""

    def __init__(self, max_items: int = 200_000) -> None:
        self.items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.max_items = max_items

    def _live(self, key: str, now: float) -> Any | None:
        expires, value = self.items.get(key, (0.0, None))
        if expires > now:
            return value
        self.items.pop(key, None)
        return None

    def _put(self, key: str, value: Any, ttl: float, now: float) -> None:
        self.items[key] = (now + ttl, value)
        self.items.move_to_end(key)
        while len(self.items) > self.max_items:
            self.items.popitem(last=False)

    def get(self, key: str, now: float | None = None) -> str | None:
        return self._live(key, _now(now))

    def set(self, key: str, value: str, ttl: float, now: float | None = None) -> None:
        self._put(key, value, ttl, _now(now))

    def delete(self, key: str) -> None:
        self.items.pop(key, None)

    def add_once(self, key: str, ttl: float, now: float | None = None) -> bool:
        now = _now(now)
        if self._live(key, now) is not None:
            return False
        self._put(key, "1", ttl, now)
        return True

    def count_in_window(self, key: str, window: float, now: float | None = None) -> int:
        now = _now(now)
        counter = self._live(key, now)
        if counter is None:  # the window starts with its first hit, as Redis's EXPIRE NX does
            counter = [0]
            self._put(key, counter, window, now)
        counter[0] += 1
        return int(counter[0])

    def reserve_in_windows(self, key: str, limits: Sequence[tuple[int, float]], now: float | None = None) -> float:
        now = _now(now)
        longest = max(window for _, window in limits)
        taken: deque[float] = self._live(key, now) or deque()
        while taken and taken[0] <= now - longest:
            taken.popleft()
        for limit, window in limits:
            within = [t for t in taken if t > now - window]
            if len(within) >= limit:
                return within[len(within) - limit] + window - now
        taken.append(now)
        self._put(key, taken, longest + _WINDOW_SLACK_SECONDS, now)
        return 0.0


def _now(now: float | None) -> float:
    return time.time() if now is None else now


_NO_ANSWER: Any = object()


class SharedKeys:
    """Namespaced shared state: Redis when configured, this process's LocalKeys otherwise. Nothing
    here raises for Redis: while it does not answer, the same operation runs on LocalKeys (logged)."""

    def __init__(self, redis: Redis | None, prefix: str, local: LocalKeys | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.local = local or LocalKeys()
        self._scripts: dict[str, AsyncScript] = {}

    async def _ask(self, command: Callable[[Redis], Awaitable[T]], degraded: str) -> T:
        """The one place that falls back: _NO_ANSWER without Redis or while it fails."""
        if self.redis is None:
            return _NO_ANSWER
        try:
            return await command(self.redis)
        except RedisError as err:
            warn_degraded(degraded, err)
            return _NO_ANSWER

    async def get(self, key: str) -> str | None:
        # What is set here does not change once written (a media id, a token with its expiry, a
        # committed message key), so this process's copy answers when Redis has lost the key too.
        value = await self._ask(lambda r: r.get(self.prefix + key), "shared reads fall back to this process")
        if value is _NO_ANSWER or value is None:
            return self.local.get(key)
        return value.decode() if isinstance(value, bytes) else str(value)

    async def exists(self, key: str) -> bool:
        found = await self._ask(lambda r: r.exists(self.prefix + key),
                                "de-duplication falls back to this process and the database")
        return (found is not _NO_ANSWER and bool(found)) or self.local.get(key) is not None

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        self.local.set(key, value, ttl_seconds)  # kept here too, so that an outage forgets nothing
        await self._ask(lambda r: r.set(self.prefix + key, value, ex=ttl_seconds), "shared writes kept in this process")

    async def delete(self, key: str) -> None:
        self.local.delete(key)
        await self._ask(lambda r: r.delete(self.prefix + key), "shared deletes made in this process only")

    async def add_once(self, key: str, ttl_seconds: float, now: float | None = None) -> bool:
        """True for the first call per key within ttl_seconds (SET NX), across instances."""
        first = await self._ask(lambda r: r.set(self.prefix + key, "1", nx=True, px=max(1, int(ttl_seconds * 1000))),
                                "first-time checks made in this process")
        return self.local.add_once(key, ttl_seconds, now) if first is _NO_ANSWER else bool(first)

    async def count_in_window(self, key: str, window_seconds: int) -> int:
        """Count one more hit in a fixed window that starts with the key's first hit."""
        async def count(redis: Redis) -> int:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.incr(self.prefix + key)
                pipe.expire(self.prefix + key, window_seconds, nx=True)
                hits, _ = await pipe.execute()
            return int(hits)
        hits = await self._ask(count, "rate limits counted in this process")
        return self.local.count_in_window(key, window_seconds) if hits is _NO_ANSWER else hits

    async def reserve_in_windows(self, key: str, limits: Sequence[tuple[int, float]], now: float | None = None,
                                 degraded: str = "rate limits counted in this process") -> float:
        """Take a slot under every (limit, window seconds) sliding window: 0.0 if taken, else the
        seconds until the oldest entry that blocks it leaves its window."""
        [wait] = await self.reserve_many_in_windows([key], limits, now, degraded=degraded)
        return wait

    async def reserve_many_in_windows(self, keys: Sequence[str], limits: Sequence[tuple[int, float]],
                                      now: float | None = None,
                                      degraded: str = "rate limits counted in this process") -> list[float]:
        """reserve_in_windows for each key, in order, in one round trip (one Lua call)."""
        if not keys:
            return []
        now = _now(now)
        longest = max(window for _, window in limits)
        # Bounds are written here, not computed in Lua: Lua prints numbers with 14 digits only.
        args: list[Any] = [repr(now), f"{now!r}:{secrets.token_hex(4)}", int(longest) + _WINDOW_SLACK_SECONDS,
                           repr(now - longest)]
        for limit, window in limits:
            args += [limit, window, f"({now - window!r}"]
        waits = await self.run_script(
            _SLIDING_RESERVE, list(keys), args, parse=lambda answer: [float(w) for w in answer],
            locally=lambda local: [local.reserve_in_windows(key, limits, now) for key in keys], degraded=degraded)
        return [max(0.0, wait) for wait in waits]

    async def run_script(self, lua: str, keys: list[str], args: list[Any], *, parse: Callable[[Any], T],
                         locally: Callable[[LocalKeys], T], degraded: str) -> T:
        """Run a Lua script on Redis (keys get the prefix) and parse its answer, or run its in-process
        equivalent on LocalKeys. For steps that must happen together in one round trip."""
        script = self._scripts.get(lua)
        if script is None and self.redis is not None:
            script = self._scripts[lua] = self.redis.register_script(lua)
        answer = await self._ask(lambda r: script(keys=[self.prefix + k for k in keys], args=args), degraded)
        return locally(self.local) if answer is _NO_ANSWER else parse(answer)


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
