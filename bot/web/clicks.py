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
from dataclasses import dataclass
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
# A click travels as its fields joined by FIELD (store.links.ClickRow's order, without is_unique,
# which the script decides), and a batch as its clicks joined by CLICK: splitting them back costs a
# fraction of JSON per click. Neither character can be in a field (see _packed).
FIELD, CLICK = "\x1f", "\x1e"
# One round trip for a batch of redirects: per click (in order) the flood check and the unique
# check, then one stream entry with the clicks kept. KEYS: the stream, the buffered-clicks counter;
# ARGV: the two windows in ms, the key prefix, then each click's "<link id>:<visitor id>" and each
# packed click, joined by CLICK. The per-click flood and unique keys (prefix + clk:flood:<link id>:
# <visitor id>, clk:uniq:...) are made here rather than passed in KEYS: redis-py packs each argument
# in Python (~1.5 µs each, three per click before), and partnerbot runs one Redis, not a cluster
# (where a script must name every key it touches in KEYS). Answers one character per click: '-'
# dropped as part of a flood, '1' unique, '0' not.
_RECORD_BATCH = """
local who, clicks = {}, {}
for w in string.gmatch(ARGV[4], '[^\\30]+') do who[#who + 1] = w end
for c in string.gmatch(ARGV[5], '[^\\30]+') do clicks[#clicks + 1] = c end
local kept, flags, kept_flags = {}, {}, {}
for i = 1, #who do
  if redis.call('SET', ARGV[3] .. 'clk:flood:' .. who[i], '1', 'NX', 'PX', ARGV[1]) then
    local unique = redis.call('SET', ARGV[3] .. 'clk:uniq:' .. who[i], '1', 'NX', 'PX', ARGV[2]) and '1' or '0'
    kept[#kept + 1] = clicks[i]
    kept_flags[#kept_flags + 1] = unique
    flags[#flags + 1] = unique
  else
    flags[#flags + 1] = '-'
  end
end
if #kept > 0 then
  redis.call('XADD', KEYS[1], '*', 'c', table.concat(kept, '\\30'), 'u', table.concat(kept_flags))
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
# What a redirect hands over: (link_id, visitor_id, ip_hash, user_agent, referrer, is_bot, at). A
# plain tuple; the event id, packing and classification are done per batch, after the response.
Answered = tuple[int, str, str, str, str, bool, float]


@dataclass(frozen=True)
class ClickEvent:
    """A recorded click, for whoever waits for one (ClickRecorder.record)."""
    event_id: str
    link_id: int
    at: float
    visitor_id: str
    ip_hash: str
    user_agent: str
    referrer: str
    is_bot: bool
    is_unique: bool

    @classmethod
    def of(cls, row: link_store.ClickRow) -> ClickEvent:
        return cls(row[0], int(row[1]), float(row[2]), row[3], row[4], row[5], row[6], row[7] == "1", row[8] == "1")


def _clean(value: str, limit: int) -> str:
    value = value[:limit]
    if FIELD in value or CLICK in value:  # a header cannot carry them; a defence, not a case
        value = value.replace(FIELD, " ").replace(CLICK, " ")
    return value


def _packed(event_id: str, click: Answered) -> str:
    link_id, visitor_id, ip_hash, user_agent, referrer, is_bot, at = click
    return FIELD.join((event_id, str(link_id), repr(at), visitor_id, ip_hash, _clean(user_agent, 512),
                       _clean(referrer, 1024), "1" if is_bot else "0"))


def stream_clicks(fields: dict[bytes, bytes]) -> list[link_store.ClickRow]:
    """The clicks of one stream entry: a batch ('c' packed, or 'b' JSON as instances before packing
    wrote it; 'u': one unique flag per click), or a single click as instances before batching wrote
    it ('e', 'u')."""
    flags = fields.get(b"u", b"").decode()
    if b"c" in fields:
        return [[*click.split(FIELD), flag] for click, flag in zip(fields[b"c"].decode().split(CLICK), flags)]
    if b"b" in fields:
        return [[*_old_click(values), flag] for values, flag in zip(json.loads(fields[b"b"]), flags)]
    old = json.loads(fields[b"e"])
    return [[*_old_click([old[name] for name in ("event_id", "link_id", "at", "visitor_id", "ip_hash", "user_agent",
                                                  "referrer", "is_bot")]), "1" if flags == "1" else "0"]]


def _old_click(values: list[Any]) -> list[str]:
    event_id, link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot = values
    return [event_id, str(link_id), repr(float(at)), visitor_id, ip_hash, user_agent, referrer, "1" if is_bot else "0"]


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
        self._local: list[link_store.ClickRow] = []
        # Its own in-process keys: a burst of clicks must not push other state out of a shared bound.
        self.shared = SharedKeys(redis, prefix, LocalKeys(max_items=200_000))
        self._group_ready = False
        # Clicks answered but not yet classified, each with the future of whoever waits for it.
        self._queue: list[tuple[Answered, asyncio.Future[ClickEvent | None] | None]] = []
        self._recording: asyncio.Task[None] | None = None
        self._clicks_per_entry = RECORD_BATCH  # judged again by every read of the stream
        self._done: AsyncScript | None = None
        # One flush at a time per process: flush_all must not return while the loop's flush still
        # holds clicks it took from the buffer.
        self._flushing = asyncio.Lock()
        # Stream entries a dead writer read but never acknowledged are taken over after this.
        self.claim_idle_ms = int(reclaim_after * 1000)

    def record_soon(self, link_id: int, visitor_id: str, ip_hash: str, user_agent: str, referrer: str,
                    is_bot: bool) -> None:
        """Record after the response has gone: a slow Redis must not slow the redirect."""
        self._queue.append(((link_id, visitor_id, ip_hash, user_agent, referrer, is_bot, time.time()), None))
        if self._recording is None or self._recording.done():
            self._recording = asyncio.create_task(self._record_queued())

    async def record(self, link_id: int, visitor_id: str, ip_hash: str, user_agent: str, referrer: str,
                     is_bot: bool) -> ClickEvent | None:
        """Classify and buffer one click; None when it is part of a flood from one visitor."""
        done: asyncio.Future[ClickEvent | None] = asyncio.get_running_loop().create_future()
        self._queue.append(((link_id, visitor_id, ip_hash, user_agent, referrer, is_bot, time.time()), done))
        if self._recording is None or self._recording.done():
            self._recording = asyncio.create_task(self._record_queued())
        return await done

    async def _record_queued(self) -> None:
        """Classify and buffer what is queued, a batch per round trip, until the queue is empty."""
        while self._queue:
            batch, self._queue = self._queue[:RECORD_BATCH], self._queue[RECORD_BATCH:]
            try:
                packed, flags = await self._record_batch([click for click, _ in batch])
            except Exception as err:  # never leave a waiter hanging; the redirect has long been answered
                log.error("%d click(s) were not recorded: %s", len(batch), type(err).__name__)
                for _, done in batch:
                    if done is not None and not done.done():
                        done.set_exception(err)
                continue
            for (_, done), click, flag in zip(batch, packed, flags):
                if done is not None and not done.done():
                    done.set_result(None if flag == "-" else ClickEvent.of([*click.split(FIELD), flag]))

    async def _record_batch(self, clicks: list[Answered]) -> tuple[list[str], str]:
        """(the clicks packed, their flags: '-' dropped as part of a flood, '1' kept and unique, '0' kept)."""
        now = time.time()
        ids = os.urandom(16 * len(clicks)).hex()  # one random 128-bit event id per click, one call per batch
        packed = [_packed(ids[32 * i:32 * i + 32], click) for i, click in enumerate(clicks)]
        who = [f"{link_id}:{visitor_id}" for link_id, visitor_id, *_ in clicks]

        def parse(flags: Any) -> str:
            return flags.decode() if isinstance(flags, bytes) else str(flags)

        def locally(local: LocalKeys) -> str:
            flags = []
            for click, link_and_visitor in zip(packed, who):
                if not local.add_once(f"clk:flood:{link_and_visitor}", self.flood_window, now):
                    flags.append("-")
                    continue
                flag = "1" if local.add_once(f"clk:uniq:{link_and_visitor}", UNIQUE_WINDOW_SECONDS, now) else "0"
                self._local.append([*click.split(FIELD), flag])
                flags.append(flag)
            return "".join(flags)

        flags = await self.shared.run_script(
            _RECORD_BATCH, ["clicks", self.buffered_key],
            [int(self.flood_window * 1000) or 1, UNIQUE_WINDOW_SECONDS * 1000, self.prefix, CLICK.join(who),
             CLICK.join(packed)],
            parse=parse, locally=locally, degraded="clicks buffered in this process")
        return packed, flags

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
            await self._store(batch)
        except Exception:
            self._local = batch + self._local
            raise
        return len(batch)

    async def _store(self, clicks: list[link_store.ClickRow]) -> None:
        one_statement = link_store.click_rows_in_one_statement(self.db.dialect)
        async with self.db.single_statement() if one_statement else self.db.session() as session:
            await link_store.store_click_rows(session, clicks, self.timezone)

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
        await self._store([click for *_, batch in entries for click in batch])
        if self._done is None:
            self._done = self.redis.register_script(_DONE)
        done_args: list[Any] = [GROUP]
        for entry_id, fields, batch in entries:
            # A single click an instance wrote before batching never went into the counter.
            done_args += [entry_id, len(batch) if b"c" in fields or b"b" in fields else 0]
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
