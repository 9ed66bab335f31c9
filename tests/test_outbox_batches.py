"""The outbox sends queued rows in batches (one claim, one reservation call per 64 cards, one mark per
batch) and stays exactly once: a crash between the sends and the batch's mark, a batch slower than
its lease, the per-member limit inside one batch, and WeCom's 45033 narrowing the concurrency."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import event, select

from bot.config import OutboxConfig
from bot.pipeline.outbox import OutboxSender
from bot.pipeline.ratelimit import MemberRateLimiter, SendSlots
from store import outbox as outbox_store
from store.db import Database
from store.models import OutboxMessage, utcnow
from store.outbox_queue import queue_messages
from tests.conftest import eventually


class Recorder:
    """A channel that takes every send (after `delay`), remembering what it was asked."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.sends: list[tuple[str, int, bool]] = []

    async def send(self, recipient: str, payload: dict, *, message_id: int, duplicate_check: bool, **_: object) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.sends.append((recipient, message_id, duplicate_check))


async def queue(db: Database, recipients: list[str]) -> None:
    async with db.session() as session:
        for recipient in recipients:
            await outbox_store.add(session, channel="wecom", recipient=recipient,
                                   payload={"kind": "text", "content": f"hello {recipient}"})


async def statuses(db: Database) -> Counter:
    async with db.session() as session:
        return Counter((await session.scalars(select(OutboxMessage.status))).all())


def sender(db: Database, channel: Recorder, *, lease: int = 30, concurrency: int = 4, batch: int = 200,
           per_minute: int = 100) -> OutboxSender:
    config = OutboxConfig(concurrency=concurrency, claim_batch=batch, lease_seconds=lease)
    return OutboxSender(db, {"wecom": channel}, config, {"wecom": MemberRateLimiter(None, "t:", per_minute, 1000)})


async def run_until(outbox: OutboxSender, done) -> None:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    loop = asyncio.create_task(outbox.run(0.05, stop))
    try:
        await eventually(done, timeout=30)
    finally:
        stop.set()
        await loop
        await outbox.drain()


async def test_a_crash_between_the_sends_and_the_batch_mark_resends_once_with_duplicate_check(database_url: str) -> None:
    db = Database(database_url)
    try:
        await queue(db, [f"m{i}" for i in range(30)])
        first = Recorder()
        dying = sender(db, first, lease=1)
        async with db.session() as session:
            claims = await outbox_store.claim_due(session, dying.lease, 200)
        await dying._dispatch(claims)
        await dying._sends.join()
        # WeCom took all 30; the instance dies before its batch mark: nothing is marked sent.
        assert len(first.sends) == 30 and await statuses(db) == Counter(sending=30)

        await asyncio.sleep(1.1)  # the lease runs out
        second = Recorder()

        async def all_sent() -> bool:
            return await statuses(db) == Counter(sent=30)

        await run_until(sender(db, second, lease=1), all_sent)
        # Each row once more, every one asking WeCom to drop it if the member already has it.
        assert sorted(s[1] for s in second.sends) == sorted(s[1] for s in first.sends)
        assert all(duplicate_check for _, _, duplicate_check in second.sends)
        assert not any(duplicate_check for _, _, duplicate_check in first.sends)
    finally:
        await db.dispose()


async def test_four_hundred_rows_take_a_handful_of_statements(database_url: str) -> None:
    db = Database(database_url)
    statements: list[str] = []

    def count(_conn, _cursor, statement: str, *_args: object) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            statements.append(statement)

    try:
        await queue(db, [f"m{i}" for i in range(400)])
        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        channel = Recorder()

        async def all_sent() -> bool:
            return await statuses(db) == Counter(sent=400)

        outbox = sender(db, channel, concurrency=8, batch=100)
        limiter, reservations = outbox.limiters["wecom"], []
        reserve_many = limiter.reserve_many

        async def counted(recipients: list[str], now: float | None = None) -> list[float]:
            reservations.append(len(recipients))
            return await reserve_many(recipients, now)

        limiter.reserve_many = counted  # type: ignore[method-assign]
        await run_until(outbox, all_sent)
        assert len(channel.sends) == 400
        # Claims and marks a batch at a time (one row at a time would be 800 statements).
        assert len(statements) <= 20, len(statements)
        # The send slots of 64 cards a call, not of a slots' worth (8): 8 calls at the most (64 + 36
        # for each 100-row batch), not 52.
        assert sum(reservations) == 400 and max(reservations) == 64 and len(reservations) <= 8, reservations
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
        await db.dispose()


async def test_a_claim_takes_at_most_its_batch(database_url: str) -> None:
    db = Database(database_url)
    try:
        await queue(db, [f"m{i}" for i in range(250)])
        sizes = []
        for _ in range(4):
            async with db.single_statement() as session:
                sizes.append(len(await outbox_store.claim_due(session, timedelta(seconds=30), 100)))
        # PostgreSQL once ran the claim's subquery again for each row it updated: one claim took all.
        assert sizes == [100, 100, 50, 0]
    finally:
        await db.dispose()


async def test_the_member_limit_holds_inside_one_batch(database_url: str) -> None:
    db = Database(database_url)
    try:
        await queue(db, ["busy"] * 5 + ["calm"])
        channel = Recorder()

        async def settled() -> bool:
            return await statuses(db) == Counter(sent=3, pending=3)

        await run_until(sender(db, channel, per_minute=2), settled)
        assert Counter(r for r, _, _ in channel.sends) == Counter(busy=2, calm=1)
        async with db.session() as session:
            waiting = (await session.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending"))).all()
        # They wait for the minute to pass, untried (attempts back to 0).
        assert all(r.next_attempt_at > utcnow() + timedelta(seconds=30) and r.attempts == 0 for r in waiting)
    finally:
        await db.dispose()


async def test_a_batch_slower_than_its_lease_is_renewed_not_taken_over(database_url: str) -> None:
    db = Database(database_url)
    try:
        await queue(db, [f"m{i}" for i in range(24)])
        # 24 sends of 0.1 s, two at a time: 1.2 s, twice the 0.6 s... the lease is whole seconds: 1 s.
        slow, other = Recorder(delay=0.1), Recorder()
        first, second = sender(db, slow, lease=1, concurrency=2, batch=24), sender(db, other, lease=1)

        async def all_sent() -> bool:
            return await statuses(db) == Counter(sent=24)

        stop = asyncio.Event()
        rival = asyncio.create_task(second.run(0.05, stop))
        try:
            await run_until(first, all_sent)
        finally:
            stop.set()
            await rival
            await second.drain()
        sent = [m for _, m, _ in slow.sends] + [m for _, m, _ in other.sends]
        assert sorted(sent) == sorted(set(sent)) and len(sent) == 24  # nobody's row went out twice
    finally:
        await db.dispose()


async def test_send_slots_halve_on_45033_and_grow_back_slowly() -> None:
    slots = SendSlots(16)
    slots.too_many()
    slots.too_many()
    assert slots.limit == 4
    for _ in range(4 * 8 - 1):
        slots.succeeded()
    assert slots.limit == 4
    slots.succeeded()
    assert slots.limit == 5
    for _ in range(5):
        await slots.acquire()
    blocked = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.01)
    assert not blocked.done()  # at the limit
    slots.release()
    await asyncio.wait_for(blocked, 1)
    for _ in range(10):
        slots.too_many()
    assert slots.limit == 1  # never none


async def test_queueing_many_skips_every_key_ever_queued_and_keeps_payloads_whole(database_url: str) -> None:
    db = Database(database_url)
    try:
        card = {"kind": "card", "title": "新任务 #1：双十二", "buttons": [{"text": "我的海报", "command": "海报 1"}]}
        first = [(f"m{i}", f"key:{i}", {**card, "card_id": f"t1-m{i}"}) for i in range(3)]
        again = [(f"m{i}", f"key:{i}", {**card, "card_id": f"t1-m{i}"}) for i in range(1, 5)]
        async with db.session() as session:
            assert await outbox_store_queue(session, first) == 3
        async with db.session() as session:
            assert await outbox_store_queue(session, again) == 2  # key:1 and key:2 were queued already
            assert await outbox_store_queue(session, []) == 0
        async with db.session() as session:
            rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        assert [r.dedupe_key for r in rows] == [f"key:{i}" for i in range(5)]
        assert rows[4].payload == {**card, "card_id": "t1-m4"} and rows[4].kind == "card"
        assert {(r.channel, r.status, r.attempts, r.purpose) for r in rows} == {("member", "pending", 0, "notice")}
        assert all(r.next_attempt_at <= utcnow() for r in rows)
    finally:
        await db.dispose()


async def outbox_store_queue(session, rows) -> int:  # type: ignore[no-untyped-def]
    return await queue_messages(session, task_id=None, purpose="notice", rows=rows)


async def test_a_passive_reply_that_fell_back_behind_a_slow_send_still_goes_out(database_url: str) -> None:
    """A reply recorded sent for the callback's answer but not put into it (too late) is sent by this
    instance; waiting behind a slow send past a third of the lease must not make it give the row up
    (no other sender can take a row recorded sent, so it would be lost)."""
    db = Database(database_url)
    try:
        slow = Recorder(delay=0.5)
        outbox = sender(db, slow, lease=1)
        async with db.session() as session:
            first = await outbox_store.add(session, channel="wecom", recipient="p1", claimed=True,
                                           payload={"kind": "text", "content": "slow one"})
            fallen_back = await outbox_store.add(session, channel="wecom", recipient="p1", sent=True,
                                                 payload={"kind": "text", "content": "was to be passive"})
        assert fallen_back.recorded_sent and not first.recorded_sent
        outbox.submit_claimed([first, fallen_back])
        await outbox.drain()
        assert [message_id for _, message_id, _ in slow.sends] == [first.id, fallen_back.id]
    finally:
        await db.dispose()
