"""Keeping WeCom's daily send quota (store.outbox.send_quota) for what the bot sends unasked.

A share of the day's quota ([wecom] reply_headroom) is kept for replies to a member's own message:
those are never held back, and nothing else may spend that share (`hold_quota`'s Allowance). A
marketer's command past the rest is refused with the numbers (handlers say so). What the bot sends
by itself — automatic reminders, a newcomer's task cards, nurturing prompts, idle-lead warnings and
recycling notices, the daily digest, tier changes, monthly statements, fraud notices, a new lead's
notice (bot/web/lead_notices.py) — sends what fits today and queues the rest `deferred`: in the
outbox (so it is not lost, and its message key still makes it exactly-once) but not sent and not
counted, until `release_deferred` finds room. Deferred rows no longer worth sending are dropped with
the reason on the row (`STALE`, one rule per purpose).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Text, and_, bindparam, cast, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from store import outbox_queue
from store.db import chunked
from store.models import Lead, Member, OutboxMessage, Share, Task
from store.outbox import send_quota
from store.pool import nurture_key, nurtured_lead_id
from store.tasks import REMINDER

# An outbox status: queued, waiting for room in WeCom's daily quota (the sender does not claim it).
DEFERRED = "deferred"
# Any fixed number: the PostgreSQL advisory lock that one transaction at a time spends the quota under.
QUOTA_LOCK_KEY = 0x5175_6F74  # "Quot"
DEADLINE_PASSED = "not sent: the task ended or its deadline passed while it waited for WeCom's daily quota"
SHARED_SINCE = "not sent: the member shared the task while the reminder waited for WeCom's daily quota"
PAST_DAY = "not sent: a digest of a day long gone by the time WeCom's daily quota had room (a newer one is due)"
SUPERSEDED = "not sent: a later tier change to the same person replaced it while it waited for WeCom's daily quota"
WARNED_TOO_LATE = "not sent: the lead was recycled or followed up while the warning waited for WeCom's daily quota"
NURTURE_OUTDATED = ("not sent: the lead was followed up, closed, handed on or given another date while the prompt "
                    "waited for WeCom's daily quota")

# What the bot sends unasked, besides task cards and reminders (store/tasks.py), as outbox purposes.
NURTURE = "nurture"  # a nurturing lead's next-contact date has come
LEAD_NOTICE = "lead_notice"  # a new lead from the salesperson's link (never stale: they must learn of the lead)
IDLE_WARNING = "idle_warning"  # a lead is recycled tomorrow unless followed up
RECYCLED = "recycled"  # a lead went back to its pool (never stale: the holder should learn it)
DIGEST = "digest"  # yesterday's funnel, to admins
TIER = "tier"  # a partner's tier changed (to its members; the summary to admins)
STATEMENT = "statement"  # last month's points and commission (never stale: it is the member's money)
FRAUD_FLAGS = "fraud_flags"  # new fraud flags, to admins (never stale: the flags wait for review)

Row = tuple[str, str, dict[str, Any]]  # (recipient, message key, payload), as queue_messages takes them


@dataclass(frozen=True)
class Allowance:
    """Today's quota as automatic sends and marketers' commands may spend it: `kept` of the day's
    `limit` stays free for replies to members' own messages, so `left` is what remains after both."""
    used: int  # sent since WeCom's day began, plus queued and not yet sent (replies included)
    limit: int
    kept: int

    @property
    def left(self) -> int:
        return max(0, self.limit - self.kept - self.used)

    def allows(self, more: int) -> bool:
        return self.used + more <= self.limit - self.kept


class QuotaRules(Protocol):
    """How the day's quota is reckoned: [wecom]'s settings (bot.config.WeComConfig is one)."""
    licensed_accounts: int  # 0: count the members
    reply_headroom: float  # the share kept for replies


def kept_for_replies(limit: int, reply_headroom: float) -> int:
    # round, not ceil: 200 × 0.1 is 20.000000000000004 in floating point, and ceil would keep 21.
    return min(limit, round(limit * reply_headroom))


async def hold_quota(session: AsyncSession, *, now: datetime, rules: QuotaRules) -> Allowance:
    """Today's quota, less the share kept for replies, counted after taking a lock this transaction
    holds until it ends: two instances (or a command and a job) spending the quota at once would
    otherwise both see the same room."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(QUOTA_LOCK_KEY)))
    else:
        # SQLite reads outside a transaction until the first write: a write of nothing takes the
        # database's one write lock now (others wait, busy_timeout), so the count below stays true.
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == -1).values(status=OutboxMessage.status))
    quota = await send_quota(session, now=now, licensed_accounts=rules.licensed_accounts)
    return Allowance(quota.used, quota.limit, kept_for_replies(quota.limit, rules.reply_headroom))


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


async def queue_unasked(session: AsyncSession, *, now: datetime, rules: QuotaRules, purpose: str,
                        rows: Sequence[Row], task_id: int | None = None) -> tuple[int, int, Allowance]:
    """What the bot sends by itself: what fits of today's quota (less the replies' share) queued now,
    the rest deferred; (queued now, deferred, the allowance it had). Nothing to queue takes no lock."""
    if not rows:
        return 0, 0, Allowance(0, 0, 0)
    quota = await hold_quota(session, now=now, rules=rules)
    queued, deferred = await queue_within(session, quota.left, task_id=task_id, purpose=purpose, rows=rows)
    return queued, deferred, quota


def _stale_rules(now: datetime, zone: str) -> list[tuple[Any, str]]:
    """(condition, reason) for each kind of deferred row no longer worth sending; a purpose not named
    here (recycled, statement, fraud_flags, lead_notice) is never stale; nurturing prompts have a rule
    of their own (`_outdated_nurture_prompts`)."""
    task_over = OutboxMessage.task_id.in_(select(Task.id).where(or_(Task.status == "ended", Task.deadline <= now)))
    shared = exists().where(Share.task_id == OutboxMessage.task_id, Share.member_id == Member.id,
                            Member.userid == OutboxMessage.recipient)
    local = ZoneInfo(zone)
    today = datetime.combine(now.astimezone(local).date(), time(0), tzinfo=local)  # the digest's day is [server]'s
    later = aliased(OutboxMessage)
    newer_tier = exists().where(later.purpose == TIER, later.recipient == OutboxMessage.recipient,
                                later.id > OutboxMessage.id)
    return [(task_over, DEADLINE_PASSED),
            (and_(OutboxMessage.purpose == REMINDER, shared), SHARED_SINCE),
            # Queued on an earlier day: it tells of the day before that, and today's digest is due.
            (and_(OutboxMessage.purpose == DIGEST, OutboxMessage.created_at < today), PAST_DAY),
            (and_(OutboxMessage.purpose == TIER, newer_tier), SUPERSEDED),
            # A day after the warning the lead is past its recycling time: recycled (the holder hears
            # that instead) or followed up; "recycled tomorrow" would be wrong either way.
            (and_(OutboxMessage.purpose == IDLE_WARNING, OutboxMessage.created_at < now - timedelta(days=1)),
             WARNED_TOO_LATE)]


async def _outdated_nurture_prompts(session: AsyncSession) -> list[int]:
    """Deferred nurturing prompts whose lead is no longer nurturing for that date in the recipient's
    hands (followed up, won, lost, returned, recycled, given another date): its key is compared with
    the key the lead would have now, built by the same function (no date parsed back out of it)."""
    prompts = (await session.execute(select(OutboxMessage.id, OutboxMessage.dedupe_key, OutboxMessage.recipient)
                                     .where(OutboxMessage.status == DEFERRED, OutboxMessage.purpose == NURTURE))).all()
    lead_ids = sorted({lead_id for _, key, _ in prompts if (lead_id := nurtured_lead_id(key)) is not None})
    current: set[tuple[str, str]] = set()  # (key, holder) of every prompt still due
    for group in chunked(lead_ids):
        for lead_id, next_contact_at, holder in await session.execute(
                select(Lead.id, Lead.next_contact_at, Member.userid).join(Member, Member.id == Lead.owner_id)
                .where(Lead.id.in_(group), Lead.status == "nurturing", Lead.next_contact_at.is_not(None))):
            current.add((nurture_key(lead_id, next_contact_at), holder))
    return [row_id for row_id, key, recipient in prompts if (key, recipient) not in current]


async def drop_stale_deferred(session: AsyncSession, now: datetime, zone: str) -> int:
    """Deferred rows no longer worth sending (`_stale_rules`, `_outdated_nurture_prompts`), marked
    failed with the reason; how many. `zone`: [server] timezone, whose days the digest counts."""
    dropped = 0
    for condition, reason in _stale_rules(now, zone):
        dropped += await _drop(session, condition, reason)
    for group in chunked(await _outdated_nurture_prompts(session)):
        dropped += await _drop(session, OutboxMessage.id.in_(group), NURTURE_OUTDATED)
    return dropped


async def _drop(session: AsyncSession, condition: Any, reason: str) -> int:
    result = await session.execute(update(OutboxMessage).where(OutboxMessage.status == DEFERRED, condition)
                                   .values(status="failed", last_error=reason)
                                   .execution_options(synchronize_session=False))
    return result.rowcount


async def release_deferred(session: AsyncSession, room: int, now: datetime, keys: Sequence[str] | None = None) -> int:
    """Let up to `room` deferred rows go now (only those with these message `keys`, if given); how
    many. Task cards and reminders of tasks with a deadline go first, earliest deadline first; then
    everything else — cards of tasks without one, nurturing prompts, idle warnings, recycling
    notices, digests, tier changes, statements, fraud notices — in the order it was queued (what
    waited longest goes first)."""
    if room <= 0 or keys == []:
        return 0
    deadline = select(Task.deadline).where(Task.id == OutboxMessage.task_id).scalar_subquery()
    chosen = OutboxMessage.status == DEFERRED
    if keys is not None:
        chosen = and_(chosen, OutboxMessage.dedupe_key.in_(keys))
    picked = list(await session.scalars(
        select(OutboxMessage.id).where(chosen).order_by(deadline.is_(None), deadline, OutboxMessage.id).limit(room)))
    for group in chunked(picked):
        await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(group), OutboxMessage.status == DEFERRED)
                              .values(status="pending", next_attempt_at=now)
                              .execution_options(synchronize_session=False))
    return len(picked)


async def still_deferred(session: AsyncSession, keys: Sequence[str]) -> int:
    """How many of the rows with these message keys wait for the quota."""
    return int(await session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.status == DEFERRED, OutboxMessage.dedupe_key.in_(keys))) or 0)


async def any_deferred(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(exists().where(OutboxMessage.status == DEFERRED))))
