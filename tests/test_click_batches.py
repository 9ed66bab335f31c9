"""Clicks recorded in batches: the flood and unique checks of a batch give what one click at a time
would, a batch is one stream entry, the buffered-clicks count (`lag`) counts clicks, not entries,
entries instances wrote before batching or before packing are still stored, and a stored batch
grows the daily counts by exactly the clicks it stored (on each backend)."""
import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from bot.web.clicks import ClickRecorder, stream_clicks
from store import links as link_store
from store.db import Database
from store.models import Click, ClickDaily
from tests.conftest import seed
from tests.test_links import BROWSER


@pytest.fixture
async def link_id(database_url: str) -> int:
    await seed(database_url)
    db = Database(database_url)
    async with db.session() as session:
        from store import links as link_store, tasks as task_store
        from store.members import get_member
        task = await task_store.create_task(session, title="T", url="https://x.example", creator=None)
        link = await link_store.get_or_create_link(session, task, await get_member(session, "p1"), "link")
    await db.dispose()
    return link.id


@pytest.fixture(params=["redis", "in-process"])
async def recorder(request: pytest.FixtureRequest, database_url: str, link_id: int) -> AsyncIterator[ClickRecorder]:
    redis = Redis.from_url(request.getfixturevalue("redis_url")) if request.param == "redis" else None
    prefix = f"pbtest:batch:{secrets.token_hex(4)}:"
    db = Database(database_url)
    yield ClickRecorder(db, redis, prefix, flood_window=1.0)
    if redis is not None:
        keys = [k async for k in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    await db.dispose()


async def stored(recorder: ClickRecorder) -> list[Click]:
    async with recorder.db.session() as session:
        return list(await session.scalars(select(Click).order_by(Click.id)))


async def test_a_burst_is_classified_as_one_click_at_a_time_would_be(recorder: ClickRecorder, link_id: int) -> None:
    # 250 taps at once: 100 visitors tap once, 50 tap three times (a flood: kept once each).
    taps = [f"v{i:019d}" for i in range(100)] + [f"w{i:019d}" for i in range(50)] * 3
    kept = await asyncio.gather(*(recorder.record(link_id, visitor, "h" * 64, BROWSER, "", False)
                                  for visitor in taps))
    assert sum(event is not None for event in kept) == 150
    assert all(event.is_unique for event in kept if event is not None)
    assert [event is None for event in kept[100:150]] == [False] * 50 and all(e is None for e in kept[150:])
    assert await recorder.lag() == 150  # clicks, however many stream entries hold them
    if recorder.redis is not None:
        entries = await recorder.redis.xrange(recorder.stream)
        assert 1 < len(entries) < 150  # batched: several clicks per entry (at most 100 each)
        assert sum(len(stream_clicks(fields)) for _, fields in entries) == 150
        # The keys instances share (older ones too, during a rolling restart) keep their names.
        for kind in ("flood", "uniq"):
            assert await recorder.redis.exists(f"{recorder.prefix}clk:{kind}:{link_id}:w{0:019d}")
    # Recorded again after the flood window has passed: kept, but no longer unique.
    await asyncio.sleep(1.05)
    again = await asyncio.gather(*(recorder.record(link_id, f"v{i:019d}", "h" * 64, BROWSER, "", False)
                                   for i in range(10)))
    assert [event is not None and not event.is_unique for event in again] == [True] * 10
    await recorder.flush_all()
    assert await recorder.lag() == 0
    clicks = await stored(recorder)
    assert len(clicks) == 160 and len({c.event_id for c in clicks}) == 160
    assert sum(c.is_unique for c in clicks) == 150


async def test_clicks_answered_without_waiting_are_all_written_on_a_graceful_stop(recorder: ClickRecorder,
                                                                                  link_id: int) -> None:
    for i in range(700):
        recorder.record_soon(link_id, f"s{i:019d}", "h" * 64, BROWSER, "https://ref.example", i % 7 == 0)
    await recorder.flush_all()
    clicks = await stored(recorder)
    assert len(clicks) == 700 and sum(c.is_bot for c in clicks) == 100
    assert {c.referrer for c in clicks} == {"https://ref.example"} and await recorder.lag() == 0


async def test_entries_from_before_batching_and_before_packing_are_stored(redis_url: str, database_url: str,
                                                                          link_id: int) -> None:
    redis = Redis.from_url(redis_url)
    prefix = f"pbtest:batch:{secrets.token_hex(4)}:"
    db = Database(database_url)
    recorder = ClickRecorder(db, redis, prefix, flood_window=60)
    try:
        old = {"event_id": "e" * 32, "link_id": link_id, "at": 1_800_000_000.0, "visitor_id": "o" * 20,
               "ip_hash": "h" * 64, "user_agent": BROWSER, "referrer": "", "is_bot": False, "is_unique": False}
        await redis.xadd(recorder.stream, {"e": json.dumps(old), "u": "1"})
        # A JSON batch, as instances wrote them before clicks were packed (counted in the counter).
        batch = [["b" * 32, link_id, 1_800_000_001.5, "p" * 20, "h" * 64, BROWSER, "https://ref.example", True],
                 ["c" * 32, link_id, 1_800_000_002.0, "q" * 20, "h" * 64, "", "", False]]
        await redis.xadd(recorder.stream, {"b": json.dumps(batch, ensure_ascii=False), "u": "01"})
        await redis.incrby(prefix + recorder.buffered_key, 2)
        await recorder.record(link_id, "n" * 20, "h" * 64, BROWSER, "", False)
        await recorder.flush_all()
        async with db.session() as session:
            visitors = (await session.execute(select(Click.visitor_id, Click.is_unique, Click.is_bot, Click.referrer)
                                              .order_by(Click.visitor_id))).all()
            assert await session.scalar(select(func.count()).select_from(Click)) == 4
        assert [tuple(v) for v in visitors] == [("n" * 20, True, False, ""), ("o" * 20, True, False, ""),
                                                ("p" * 20, False, True, "https://ref.example"),
                                                ("q" * 20, True, False, "")]
        assert await recorder.lag() == 0 and await redis.xlen(recorder.stream) == 0
    finally:
        keys = [k async for k in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await db.dispose()


async def test_a_stored_batch_grows_the_daily_counts_by_exactly_what_it_stored(database_url: str, link_id: int) -> None:
    """store_click_rows (one statement on PostgreSQL) against the recount from the clicks themselves:
    a batch written twice, a click twice in one batch, bots, local midnight, all-empty referrers."""
    zone = "Asia/Shanghai"
    midnight = datetime(2027, 3, 1, tzinfo=ZoneInfo(zone)).timestamp()  # a local day ends between these
    rows = [[f"{i:032x}", str(link_id), repr(midnight + (i - 5) * 0.9 - 0.05), f"v{i % 4:019d}", "h" * 64,
             BROWSER if i % 3 else "", "", "1" if i % 5 == 0 else "0", "1" if i % 2 else "0"] for i in range(12)]
    db = Database(database_url)
    try:
        for batch in (rows + rows[:1], rows[3:], [rows[7]]):  # the last two store nothing new
            one_statement = link_store.click_rows_in_one_statement(db.dialect)
            async with db.single_statement() if one_statement else db.session() as session:
                await link_store.store_click_rows(session, batch, zone)
        async with db.session() as session:
            stored = (await session.execute(select(Click.link_id, Click.at, Click.is_bot, Click.is_unique))).all()
            daily = (await session.execute(select(ClickDaily.day, ClickDaily.link_id, ClickDaily.clicks,
                                                  ClickDaily.unique_clicks, ClickDaily.bot_clicks)
                                           .order_by(ClickDaily.day))).all()
            agents = sorted(await session.scalars(select(Click.user_agent)))
        assert len(stored) == 12 and agents == sorted(row[5] for row in rows)
        assert [tuple(row) for row in daily] == [
            (r["day"], r["link_id"], r["clicks"], r["unique_clicks"], r["bot_clicks"])
            for r in link_store.daily_click_rows(stored, zone)]
        assert [row[0] for row in daily] == [date(2027, 2, 28), date(2027, 3, 1)]
    finally:
        await db.dispose()


def test_a_field_separator_in_a_header_cannot_split_a_click() -> None:
    from bot.web.clicks import CLICK, FIELD, _packed
    packed = _packed("e" * 32, (7, "v" * 20, "h" * 64, f"agent{FIELD}x", f"ref{CLICK}y", False, 1.5))
    assert packed.split(FIELD) == ["e" * 32, "7", "1.5", "v" * 20, "h" * 64, "agent x", "ref y", "0"]
