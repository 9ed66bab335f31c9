"""Click recording that never slows a redirect and never loses a click.

The redirect only classifies the click (unique? part of a flood?) and appends it to a buffer: a
Redis stream when Redis is configured — it outlives this process and any instance can write it
to the database — or an in-process list otherwise. A flusher writes batches; a graceful stop
flushes what is left. Each click carries an event id, so a batch written twice is stored once.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from store import links as link_store
from store.db import Database
from store.redis import LocalKeys, SharedKeys

log = logging.getLogger(__name__)

UNIQUE_WINDOW_SECONDS = 86400
GROUP = "writers"
# Flood check, unique check and buffering in one round trip: this runs on every redirect.
_RECORD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return -1 end
local unique = redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) and 1 or 0
redis.call('XADD', KEYS[3], '*', 'e', ARGV[3], 'u', unique)
return unique
"""


@dataclass(frozen=True)
class ClickEvent:
    event_id: str
    link_id: int
    at: float
    visitor_id: str
    ip_hash: str
    user_agent: str
    referrer: str
    is_bot: bool
    is_unique: bool

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        values["at"] = datetime.fromtimestamp(self.at, timezone.utc)
        return values


class ClickRecorder:
    def __init__(self, db: Database, redis: Redis | None, prefix: str, flood_window: float,
                 batch_size: int = 500, flush_interval: float = 0.5, timezone: str = "UTC",
                 reclaim_after: float = 30.0) -> None:
        self.db = db
        self.timezone = timezone  # whose days the daily click counts follow
        self.redis = redis
        self.stream = f"{prefix}clicks"
        self.prefix = prefix
        self.flood_window = flood_window
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._local: list[ClickEvent] = []
        # Its own in-process keys: a burst of clicks must not push other state out of a shared bound.
        self.shared = SharedKeys(redis, prefix, LocalKeys(max_items=200_000))
        self._group_ready = False
        self._pending: set[asyncio.Task[ClickEvent | None]] = set()
        # Recording runs after the response; this keeps a burst from opening a Redis connection each.
        self._slots = asyncio.Semaphore(32)
        # Stream entries a dead writer read but never acknowledged are taken over after this.
        self.claim_idle_ms = int(reclaim_after * 1000)

    def record_soon(self, link_id: int, visitor_id: str, ip_hash: str, user_agent: str, referrer: str,
                    is_bot: bool) -> None:
        """Record after the response has gone: a slow Redis must not slow the redirect."""
        task = asyncio.create_task(self._record_in_turn(link_id, visitor_id, ip_hash, user_agent, referrer, is_bot))
        self._pending.add(task)
        task.add_done_callback(self._recorded)

    async def _record_in_turn(self, *args: Any) -> ClickEvent | None:
        async with self._slots:
            return await self.record(*args)

    def _recorded(self, task: asyncio.Task[ClickEvent | None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a click was not recorded: %s", type(task.exception()).__name__)

    async def record(self, link_id: int, visitor_id: str, ip_hash: str, user_agent: str, referrer: str,
                     is_bot: bool) -> ClickEvent | None:
        """Classify and buffer one click; None when it is part of a flood from one visitor."""
        now = time.time()
        visitor_key = f"{link_id}:{visitor_id}"
        event = ClickEvent(secrets.token_hex(16), link_id, now, visitor_id, ip_hash, user_agent[:512],
                           referrer[:1024], is_bot, False)
        flood_key, unique_key = f"clk:flood:{visitor_key}", f"clk:uniq:{visitor_key}"

        def parse(unique: Any) -> ClickEvent | None:
            return None if int(unique) < 0 else replace(event, is_unique=bool(int(unique)))

        def locally(local: LocalKeys) -> ClickEvent | None:
            if not local.add_once(flood_key, self.flood_window, now):
                return None
            buffered = replace(event, is_unique=local.add_once(unique_key, UNIQUE_WINDOW_SECONDS, now))
            self._local.append(buffered)
            return buffered

        return await self.shared.run_script(
            _RECORD, [flood_key, unique_key, "clicks"],
            [int(self.flood_window * 1000) or 1, UNIQUE_WINDOW_SECONDS * 1000, json.dumps(asdict(event))],
            parse=parse, locally=locally, degraded="clicks buffered in this process")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                written = await self.flush()
            except Exception as err:
                log.warning("clicks: cannot write now (%s); they stay buffered", type(err).__name__)
                written = 0
            if written < self.batch_size:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.flush_interval)
        await self.flush_all()

    async def flush_all(self, max_stream_batches: int = 20) -> None:
        """On a graceful stop: write everything this process holds, and a bounded share of the
        Redis stream (other instances keep adding to it; they or the next start write the rest)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        while await self._flush_local():
            pass
        if self.redis is not None:
            for _ in range(max_stream_batches):
                with contextlib.suppress(RedisError):
                    if not await self._flush_stream():
                        break

    async def flush(self) -> int:
        written = await self._flush_local()
        if self.redis is not None:
            with contextlib.suppress(RedisError):
                written += await self._flush_stream()
        return written

    async def _flush_local(self) -> int:
        batch, self._local = self._local[: self.batch_size], self._local[self.batch_size:]
        if not batch:
            return 0
        try:
            async with self.db.session() as session:
                await link_store.insert_clicks(session, [e.row() for e in batch], self.timezone)
        except Exception:
            self._local = batch + self._local
            raise
        return len(batch)

    async def _flush_stream(self) -> int:
        try:
            return await self._read_stream()
        except ResponseError as err:
            if "NOGROUP" not in str(err):
                raise
            # Redis restarted empty (it keeps nothing on disk): the stream is new and has no group yet.
            log.warning("clicks: the Redis stream lost its consumer group (a Redis restart?); creating it again")
            self._group_ready = False
            return await self._read_stream()

    async def _read_stream(self) -> int:
        assert self.redis is not None
        if not self._group_ready:
            try:
                await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise
            self._group_ready = True
        # Entries another writer read but never acknowledged (it died) come back after claim_idle_ms.
        _, stale, *_ = await self.redis.xautoclaim(self.stream, GROUP, self.consumer, min_idle_time=self.claim_idle_ms,
                                                   start_id="0-0", count=self.batch_size)
        entries = list(stale)
        if len(entries) < self.batch_size:
            fresh = await self.redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"},
                                                count=self.batch_size - len(entries))
            entries += [entry for _, stream_entries in fresh for entry in stream_entries]
        if not entries:
            return 0
        rows = [replace(ClickEvent(**json.loads(fields[b"e"])), is_unique=fields.get(b"u") == b"1").row()
                for _, fields in entries]
        async with self.db.session() as session:
            await link_store.insert_clicks(session, rows, self.timezone)
        ids = [entry_id for entry_id, _ in entries]
        await self.redis.xack(self.stream, GROUP, *ids)
        await self.redis.xdel(self.stream, *ids)
        return len(rows)

    async def trim_stream(self, consumer_idle_seconds: float = 86400.0) -> tuple[int, int]:
        """Drop what the stream holds that is already in the database, and the group's consumers
        that have been idle this long with nothing pending (one is left by every process that ever
        ran): (entries trimmed, consumers removed). Entries are deleted once written, so this finds
        only what a crash between acknowledging and deleting left behind."""
        if self.redis is None:
            return 0, 0
        try:
            groups = {_text(g["name"]): g for g in await self.redis.xinfo_groups(self.stream)}
        except ResponseError:  # no stream yet: nothing was ever clicked through Redis
            return 0, 0
        if GROUP not in groups:
            return 0, 0
        # Below the oldest entry still pending, and up to the last one handed out, everything was
        # acknowledged: written to the database. Later entries were never handed out.
        pending = await self.redis.xpending(self.stream, GROUP)
        keep_from = pending["min"] if pending["pending"] else groups[GROUP]["last-delivered-id"]
        trimmed = int(await self.redis.xtrim(self.stream, minid=keep_from, approximate=False))
        removed = 0
        for consumer in await self.redis.xinfo_consumers(self.stream, GROUP):
            # A live writer touches the group every flush interval, so a day's idleness means it is gone.
            name = _text(consumer["name"])
            if name != self.consumer and not consumer["pending"] and consumer["idle"] >= consumer_idle_seconds * 1000:
                await self.redis.xgroup_delconsumer(self.stream, GROUP, name)
                removed += 1
        return trimmed, removed

    async def lag(self) -> int:
        """Clicks recorded but not yet in the database."""
        pending = len(self._local)
        if self.redis is not None:
            with contextlib.suppress(RedisError):
                pending += int(await self.redis.xlen(self.stream))
        return pending


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
