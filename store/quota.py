"""Keeping WeCom's daily send quota (store.outbox.send_quota) for what the bot sends unasked.

A marketer's command past the quota is refused with the numbers (handlers say so). What the bot sends
by itself — automatic reminders, the task cards of someone who joins — sends what fits today and
queues the rest `deferred`: in the outbox (so it is not lost, and its message key still makes it
exactly-once) but not sent and not counted, until `release_deferred` finds room, earliest deadline
first; one whose task has ended or whose deadline has passed is dropped with the reason on the row.
Replies to a member's own message are not held back here.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, bindparam, cast, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from store import outbox_queue
from store.db import chunked
from store.models import Member, OutboxMessage, Share, Task
from store.outbox import SendQuota, send_quota
from store.tasks import REMINDER

# An outbox status: queued, waiting for room in WeCom's daily quota (the sender does not claim it).
DEFERRED = "deferred"
# Any fixed number: the PostgreSQL advisory lock that one transaction at a time spends the quota under.
QUOTA_LOCK_KEY = 0x5175_6F74  # "Quot"
DEADLINE_PASSED = "not sent: the task ended or its deadline passed while it waited for WeCom's daily quota"
SHARED_SINCE = "not sent: the member shared the task while the reminder waited for WeCom's daily quota"

Row = tuple[str, str, dict[str, Any]]  # (recipient, message key, payload), as queue_messages takes them


async def hold_quota(session: AsyncSession, *, now: datetime, licensed_accounts: int) -> SendQuota:
    """Today's quota, counted after taking a lock this transaction holds until it ends: two instances
    (or a command and a job) spending the quota at once would otherwise both see the same room."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(QUOTA_LOCK_KEY)))
    else:
        # SQLite reads outside a transaction until the first write: a write of nothing takes the
        # database's one write lock now (others wait, busy_timeout), so the count below stays true.
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == -1).values(status=OutboxMessage.status))
    return await send_quota(session, now=now, licensed_accounts=licensed_accounts)


async def new_rows(session: AsyncSession, rows: Sequence[Row]) -> list[Row]:
    """The rows whose message key was never queued (queue_messages would skip the others)."""
    keys = [key for _, key, _ in rows]
    queued: set[str] = set()
    if session.bind.dialect.name == "postgresql":  # one array parameter: 10,000 keys in one round trip
        queued.update(await session.scalars(select(OutboxMessage.dedupe_key).where(
            OutboxMessage.dedupe_key == func.any(cast(bindparam("keys", keys, type_=ARRAY(Text)), ARRAY(Text))))))
    else:
        for group in chunked(keys):
            queued.update(await session.scalars(select(OutboxMessage.dedupe_key)
                                                .where(OutboxMessage.dedupe_key.in_(group))))
    return [row for row in rows if row[1] not in queued]


async def queue_within(session: AsyncSession, room: int, *, task_id: int | None, purpose: str,
                       rows: Sequence[Row]) -> tuple[int, int]:
    """Queue new rows: the first `room` to go now, the rest deferred; (queued now, deferred)."""
    fresh = await new_rows(session, rows)
    room = max(0, room)
    now = await outbox_queue.queue_messages(session, task_id=task_id, purpose=purpose, rows=fresh[:room])
    later = await outbox_queue.queue_messages(session, task_id=task_id, purpose=purpose, rows=fresh[room:],
                                              status=DEFERRED)
    return now, later


async def drop_stale_deferred(session: AsyncSession, now: datetime) -> int:
    """Deferred rows no longer worth sending: their task ended or passed its deadline, or (a reminder)
    the member has shared it since. Marked failed with the reason."""
    deferred = OutboxMessage.status == DEFERRED
    task_over = OutboxMessage.task_id.in_(select(Task.id).where(or_(Task.status == "ended", Task.deadline <= now)))
    shared = exists().where(Share.task_id == OutboxMessage.task_id, Share.member_id == Member.id,
                            Member.userid == OutboxMessage.recipient)
    dropped = 0
    for condition, reason in ((task_over, DEADLINE_PASSED), (and_(OutboxMessage.purpose == REMINDER, shared), SHARED_SINCE)):
        result = await session.execute(update(OutboxMessage).where(deferred, condition)
                                       .values(status="failed", last_error=reason)
                                       .execution_options(synchronize_session=False))
        dropped += result.rowcount
    return dropped


async def release_deferred(session: AsyncSession, room: int, now: datetime) -> int:
    """Let up to `room` deferred rows go now, earliest task deadline first (rows without a deadline
    after those with one, then in the order they were queued); how many."""
    if room <= 0:
        return 0
    deadline = select(Task.deadline).where(Task.id == OutboxMessage.task_id).scalar_subquery()
    picked = list(await session.scalars(
        select(OutboxMessage.id).where(OutboxMessage.status == DEFERRED)
        .order_by(deadline.is_(None), deadline, OutboxMessage.id).limit(room)))
    for group in chunked(picked):
        await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(group), OutboxMessage.status == DEFERRED)
                              .values(status="pending", next_attempt_at=now)
                              .execution_options(synchronize_session=False))
    return len(picked)


async def any_deferred(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(exists().where(OutboxMessage.status == DEFERRED))))
