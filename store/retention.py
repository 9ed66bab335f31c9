"""Retention: what grows without bound is deleted once it is old enough to be of no more use, a
bounded batch per transaction (a long delete would hold locks that callbacks wait on).

What each kind keeps, and why:
- inbox: pending and processing messages (not done yet); the newest message of each sender on each
  channel (store.bindings.uses_wecom asks whether a member ever wrote in WeCom); any message whose
  replies are still in the outbox (their foreign key).
- outbox: anything not finally sent or failed; task cards and reminders (who got which task: the
  funnel's people reached, a member's `tasks`, content attached to tasks); a nurture reminder's row
  (its key is what stops the reminder for that date from going out again while the lead stays due).
- clicks: raw clicks are rolled into click_daily as they are stored and every figure reads that, but
  fraud decisions, lead touches and attribution read raw clicks, so only clicks that no flag and no
  lead touch refers to go, and only when `clicks_days` is set (0, the default, keeps them all).
- job_runs: the once-per-period claims; a month's tiers and statements are claimed in that month.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, not_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from store.models import Click, InboxMessage, JobRun, LeadTouch, OutboxMessage, PendingUpload
from store.outbox import ANSWERED
from store.tasks import REMINDER, TASK_CARD

# A kind's days set to this: nothing of it is ever deleted.
KEEP_FOREVER = 0


@dataclass
class RetentionSettings:
    # Days to keep each; 0 keeps them forever.
    inbox_days: int = 30
    outbox_days: int = 30
    pending_uploads_days: int = 7
    job_runs_days: int = 90
    clicks_days: int = 0
    # Rows per delete statement (one transaction each), and at most this many statements per kind
    # and run: a large backlog is worked off over several runs.
    batch_size: int = 1000
    max_batches: int = 50


@dataclass(frozen=True)
class Kind:
    name: str  # the `what` label in /metrics
    setting: str  # its days in RetentionSettings
    minimum_days: int
    why_minimum: str
    key: Any  # the integer primary key column; batches go in its order
    old: Callable[[datetime], list[Any]]  # the conditions of a row to delete, given the cut-off


def _inbox(cutoff: datetime) -> list[Any]:
    newer = aliased(InboxMessage)
    return [InboxMessage.status.in_(("done", "failed")), InboxMessage.received_at < cutoff,
            ~exists().where(OutboxMessage.inbox_id == InboxMessage.id),
            exists().where(newer.channel == InboxMessage.channel, newer.user_id == InboxMessage.user_id,
                           newer.id > InboxMessage.id)]


def _outbox(cutoff: datetime) -> list[Any]:
    # Kept: their key stops a second prompt for the same date. By key, since those queued before
    # nurturing prompts had a purpose of their own (store.quota.NURTURE) are "notice".
    nurture_reminder = OutboxMessage.dedupe_key.like("nurture:%")
    return [OutboxMessage.status.in_(("sent", ANSWERED, "failed")), OutboxMessage.created_at < cutoff,
            OutboxMessage.purpose.not_in((TASK_CARD, REMINDER)), not_(nurture_reminder)]


def _clicks(cutoff: datetime) -> list[Any]:
    return [Click.at < cutoff, Click.flag_id.is_(None), ~exists().where(LeadTouch.click_id == Click.id)]


# In this order: outbox rows go before the inbox rows they point to.
KINDS = (
    Kind("outbox", "outbox_days", 2, "a retried send must still find its row", OutboxMessage.id, _outbox),
    Kind("inbox", "inbox_days", 2, "a platform retry must still meet its message (de-duplication)",
         InboxMessage.id, _inbox),
    Kind("pending_uploads", "pending_uploads_days", 3, "`keep` says an upload expired for 3 days",
         PendingUpload.member_id, lambda cutoff: [PendingUpload.received_at < cutoff]),
    Kind("job_runs", "job_runs_days", 62, "this and last month's tiers and statements are claimed there",
         JobRun.id, lambda cutoff: [JobRun.at < cutoff]),
    Kind("clicks", "clicks_days", 35, "fraud rules compare a day with the week before; lead touches "
         "come from a visitor's earlier clicks", Click.id, _clicks),
)


def problems(settings: RetentionSettings) -> list[tuple[str, str]]:
    """(key, problem) for every setting the bot could not honour safely."""
    found = []
    for kind in KINDS:
        days = getattr(settings, kind.setting)
        if days != KEEP_FOREVER and not kind.minimum_days <= days <= 36_500:
            found.append((kind.setting, f"must be 0 (keep forever) or from {kind.minimum_days} to 36500 days "
                                        f"({kind.why_minimum}), got {days}"))
    for key in ("batch_size", "max_batches"):
        if not 1 <= getattr(settings, key) <= 100_000:
            found.append((key, f"must be from 1 to 100000, got {getattr(settings, key)}"))
    return found


def due_kinds(settings: RetentionSettings) -> list[Kind]:
    return [kind for kind in KINDS if getattr(settings, kind.setting) != KEEP_FOREVER]


@dataclass(frozen=True)
class Batch:
    deleted: int  # rows this call deleted (a row another instance deleted first is not counted)
    last_key: int  # where the next batch starts looking: rows up to here were looked at
    more: bool  # a whole batch was found: there may be more


async def delete_batch(session: AsyncSession, kind: Kind, settings: RetentionSettings, now: datetime,
                       after: int = 0) -> Batch:
    """Delete up to batch_size rows of `kind` older than its days, with keys above `after`. Each
    batch starts where the last one ended, so none walks again over the rows deleted before it
    (on PostgreSQL they stay in the table as dead rows until vacuumed). The keys are read first and
    deleted by key: a DELETE ... IN (subquery) scanned the whole inbox per batch on PostgreSQL.
    What makes a row deletable cannot become untrue again (it is old and finished), so nothing is
    checked twice."""
    cutoff = now - timedelta(days=getattr(settings, kind.setting))
    keys = list(await session.scalars(select(kind.key).where(kind.key > after, *kind.old(cutoff))
                                      .order_by(kind.key).limit(settings.batch_size)))
    if not keys:
        return Batch(0, after, False)
    deleted = await session.execute(delete(kind.key.class_).where(kind.key.in_(keys)),
                                    execution_options={"synchronize_session": False})
    return Batch(int(deleted.rowcount or 0), keys[-1], len(keys) == settings.batch_size)
