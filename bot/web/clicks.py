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
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from store import links as link_store
from store.db import Database
from store.redis import LocalKeys, SharedKeys

log = logging.getLogger(__name__)

UNIQUE_WINDOW_SECONDS = 86400
GROUP = "writers"
# Clicks that arrive while a batch is with Redis wait for the next one: one round trip per batch,
# not per click (one round trip per click was a third of a redirect's CPU under load).
RECORD_BATCH = 100
# One round trip for a batch of redirects: per click (in order) the flood check and the unique
# check, then one stream entry with the clicks kept. KEYS: the stream, the buffered-clicks counter,
# then a flood key and a unique key per click; ARGV: the two windows in ms, then each click's JSON.
# Answers one character per click: '-' dropped as part of a flood, '1' unique, '0' not.
_RECORD_BATCH = """
local kept, flags, kept_flags = {}, {}, {}
for i = 3, #ARGV do
  local k = 2 * (i - 3) + 3
  if redis.call('SET', KEYS[k], '1', 'NX', 'PX', ARGV[1]) then
    local unique = redis.call('SET', KEYS[k + 1], '1', 'NX', 'PX', ARGV[2]) and '1' or '0'
    kept[#kept + 1] = ARGV[i]
    kept_flags[#kept_flags + 1] = unique
    flags[#flags + 1] = unique
  else
    flags[#flags + 1] = '-'
  end
end
if #kept > 0 then
  redis.call('XADD', KEYS[1], '*', 'b', '[' .. table.concat(kept, ',') .. ']', 'u', table.concat(kept_flags))
  redis.call('INCRBY', KEYS[2], #kept)
end
return table.concat(flags)
"""
# Written entries leave the stream, and the buffered-clicks counter drops by the clicks of each
# entry this call removed (another writer may have removed it first). KEYS: stream, counter;
# ARGV: the group, then (entry id, its clicks) pairs.
_DONE = """
local removed = 0
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then removed = removed + tonumber(ARGV[i + 1]) end
end
if removed > 0 then redis.call('DECRBY', KEYS[2], removed) end
return removed
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
        # Spelled out: dataclasses.asdict deep-copies field by field, a visible cost per stored click.
        return {"event_id": self.event_id, "link_id": self.link_id, "at": datetime.fromtimestamp(self.at, timezone.utc),
                "visitor_id": self.visitor_id, "ip_hash": self.ip_hash, "user_agent": self.user_agent,
                "referrer": self.referrer, "is_bot": self.is_bot, "is_unique": self.is_unique}

    def packed(self) -> str:
        """The click as the stream keeps it (its unique flag travels beside it): a JSON list, not
        an object, so a batch of clicks costs little to write and to read back."""
        return json.dumps([self.event_id, self.link_id, self.at, self.visitor_id, self.ip_hash, self.user_agent,
                           self.referrer, self.is_bot], ensure_ascii=False)


def stream_clicks(fields: dict[bytes, bytes]) -> list[ClickEvent]:
    """The clicks of one stream entry: a batch ('b', 'u': one unique flag per click), or a single
    click as instances before batching wrote it ('e', 'u')."""
    if b"b" in fields:
        flags = fields.get(b"u", b"").decode()
        return [ClickEvent(*values, is_unique=flag == "1") for values, flag in zip(json.loads(fields[b"b"]), flags)]
    return [replace(ClickEvent(**json.loads(fields[b"e"])), is_unique=fields.get(b"u") == b"1")]


class ClickRecorder:
    def __init__(self, db: Database, redis: Redis | None, prefix: str, flood_window: float,
                 batch_size: int = 500, flush_interval: float = 0.5, timezone: str = "UTC",
                 reclaim_after: float = 30.0) -> None:
        self.db = db
        self.timezone = timezone  # whose days the daily click counts follow
        self.redis = redis
        self.stream = f"{prefix}clicks"
        self.buffered_key = "clicks:buffered"  # how many clicks the stream holds (its entries are batches)
        self.prefix = prefix
        self.flood_window = flood_window
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._local: list[ClickEvent] = []
        # Its own in-process keys: a burst of clicks must not push other state out of a shared bound.
        self.shared = SharedKeys(redis, prefix, LocalKeys(max_items=200_000))
        self._group_ready = False
        # Clicks answered but not yet classified, each with the future of whoever waits for it.
        self._queue: list[tuple[ClickEvent, asyncio.Future[ClickEvent | None] | None]] = []
        self._recording: asyncio.Task[None] | None = None
        self._clicks_per_entry = RECORD_BATCH  # judged again by every read of the stream
        self._done: AsyncScript | None = None
        # One flush at a time per process: flush_all must not return while the loop's flush still
        # holds clicks it took from the buffer.
        self._flushing = asyncio.Lock()
        # Stream entries a dead writer read but never acknowledged are taken over after this.
        self.claim_idle_ms = int(reclaim_after * 1000)

    def _event(self, link_id: int, visitor_id: str, ip_hash: str, user_agent: str, referrer: str,
               is_bot: bool) -> ClickEvent:
        return ClickEvent(os.urandom(16).hex(), link_id, time.time(), visitor_id, ip_hash, user_agent[:512],
                          referrer[:1024], is_bot, False)

    def record_soon(self, link_id: int, visitor_id: str, ip_hash: str, user_agent: str, referrer: str,
                    is_bot: bool) -> None:
        """Record after the response has gone: a slow Redis must not slow the redirect."""
        self._enqueue(self._event(link_id, visitor_id, ip_hash, user_agent, referrer, is_bot), None)

    async def record(self, link_id: int, visitor_id: str, ip_hash: str, user_agent: str, referrer: str,
                     is_bot: bool) -> ClickEvent | None:
        """Classify and buffer one click; None when it is part of a flood from one visitor."""
        done: asyncio.Future[ClickEvent | None] = asyncio.get_running_loop().create_future()
        self._enqueue(self._event(link_id, visitor_id, ip_hash, user_agent, referrer, is_bot), done)
        return await done

    def _enqueue(self, event: ClickEvent, done: asyncio.Future[ClickEvent | None] | None) -> None:
        self._queue.append((event, done))
        if self._recording is None or self._recording.done():
            self._recording = asyncio.create_task(self._record_queued())

    async def _record_queued(self) -> None:
        """Classify and buffer what is queued, a batch per round trip, until the queue is empty."""
        while self._queue:
            batch, self._queue = self._queue[:RECORD_BATCH], self._queue[RECORD_BATCH:]
            try:
                kept = await self._record_batch([event for event, _ in batch])
            except Exception as err:  # never leave a waiter hanging; the redirect has long been answered
                log.error("%d click(s) were not recorded: %s", len(batch), type(err).__name__)
                for _, done in batch:
                    if done is not None and not done.done():
                        done.set_exception(err)
                continue
            for (_, done), event in zip(batch, kept):
                if done is not None and not done.done():
                    done.set_result(event)

    async def _record_batch(self, events: list[ClickEvent]) -> list[ClickEvent | None]:
        now = time.time()
        keys = [f"clk:{kind}:{event.link_id}:{event.visitor_id}" for event in events for kind in ("flood", "uniq")]

        def parse(flags: Any) -> list[ClickEvent | None]:
            flags = flags.decode() if isinstance(flags, bytes) else str(flags)
            return [None if flag == "-" else replace(event, is_unique=flag == "1") for event, flag in zip(events, flags)]

        def locally(local: LocalKeys) -> list[ClickEvent | None]:
            kept: list[ClickEvent | None] = []
            for event, flood_key, unique_key in zip(events, keys[::2], keys[1::2]):
                if not local.add_once(flood_key, self.flood_window, now):
                    kept.append(None)
                    continue
                buffered = replace(event, is_unique=local.add_once(unique_key, UNIQUE_WINDOW_SECONDS, now))
                self._local.append(buffered)
                kept.append(buffered)
            return kept

        return await self.shared.run_script(
            _RECORD_BATCH, ["clicks", self.buffered_key, *keys],
            [int(self.flood_window * 1000) or 1, UNIQUE_WINDOW_SECONDS * 1000, *(event.packed() for event in events)],
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
        if self._recording is not None:
            await asyncio.gather(self._recording, return_exceptions=True)
        async with self._flushing:
            while await self._flush_local():
                pass
            if self.redis is not None:
                for _ in range(max_stream_batches):
                    with contextlib.suppress(RedisError):
                        if not await self._flush_stream():
                            break

    async def flush(self) -> int:
        async with self._flushing:
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
                                                   start_id="0-0", count=max(1, self.batch_size // RECORD_BATCH))
        entries = [(entry_id, fields, stream_clicks(fields)) for entry_id, fields in stale]
        clicks = sum(len(batch) for *_, batch in entries)
        # An entry holds 1 to RECORD_BATCH clicks: ask for about as many as fill a batch, judged by
        # the entries of the last read, and again while the stream has more.
        while clicks < self.batch_size:
            count = max(1, (self.batch_size - clicks) // self._clicks_per_entry)
            fresh = await self.redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=count)
            read = [(entry_id, fields, stream_clicks(fields)) for _, stream_entries in fresh
                    for entry_id, fields in stream_entries]
            entries += read
            clicks += sum(len(batch) for *_, batch in read)
            if read:
                self._clicks_per_entry = max(1, min(RECORD_BATCH, clicks // len(entries)))
            if len(read) < count:
                break
        if not entries:
            return 0
        async with self.db.session() as session:
            await link_store.insert_clicks(session, [click.row() for *_, batch in entries for click in batch],
                                           self.timezone)
        if self._done is None:
            self._done = self.redis.register_script(_DONE)
        done_args: list[Any] = [GROUP]
        for entry_id, fields, batch in entries:
            # A single click an instance wrote before batching never went into the counter.
            done_args += [entry_id, len(batch) if b"b" in fields else 0]
        await self._done(keys=[self.stream, self.prefix + self.buffered_key], args=done_args)
        return clicks

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
        pending = len(self._local) + len(self._queue)
        if self.redis is not None:
            with contextlib.suppress(RedisError):
                pending += max(0, int(await self.redis.get(self.prefix + self.buffered_key) or 0))
        return pending


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
