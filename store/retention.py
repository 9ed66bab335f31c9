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

from sqlalchemy import and_, delete, exists, not_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from store.models import Click, InboxMessage, JobRun, LeadTouch, OutboxMessage, PendingUpload
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
    statement: Callable[[datetime, int], Any]  # (cut-off, batch size) -> DELETE


def _inbox(cutoff: datetime, batch: int) -> Any:
    newer = aliased(InboxMessage)
    old = select(InboxMessage.id).where(
        InboxMessage.status.in_(("done", "failed")), InboxMessage.received_at < cutoff,
        ~exists().where(OutboxMessage.inbox_id == InboxMessage.id),
        exists().where(newer.channel == InboxMessage.channel, newer.user_id == InboxMessage.user_id,
                       newer.id > InboxMessage.id),
    ).order_by(InboxMessage.id).limit(batch)
    return delete(InboxMessage).where(InboxMessage.id.in_(old.scalar_subquery()))


def _outbox(cutoff: datetime, batch: int) -> Any:
    nurture_reminder = and_(OutboxMessage.purpose == "notice", OutboxMessage.dedupe_key.like("nurture:%"))
    old = select(OutboxMessage.id).where(
        OutboxMessage.status.in_(("sent", "failed")), OutboxMessage.created_at < cutoff,
        OutboxMessage.purpose.not_in((TASK_CARD, REMINDER)), not_(nurture_reminder),
    ).order_by(OutboxMessage.id).limit(batch)
    return delete(OutboxMessage).where(OutboxMessage.id.in_(old.scalar_subquery()))


def _pending_uploads(cutoff: datetime, batch: int) -> Any:
    old = select(PendingUpload.member_id).where(PendingUpload.received_at < cutoff) \
        .order_by(PendingUpload.member_id).limit(batch)
    return delete(PendingUpload).where(PendingUpload.member_id.in_(old.scalar_subquery()))


def _job_runs(cutoff: datetime, batch: int) -> Any:
    old = select(JobRun.id).where(JobRun.at < cutoff).order_by(JobRun.id).limit(batch)
    return delete(JobRun).where(JobRun.id.in_(old.scalar_subquery()))


def _clicks(cutoff: datetime, batch: int) -> Any:
    old = select(Click.id).where(
        Click.at < cutoff, Click.flag_id.is_(None), ~exists().where(LeadTouch.click_id == Click.id),
    ).order_by(Click.id).limit(batch)
    return delete(Click).where(Click.id.in_(old.scalar_subquery()))


# In this order: outbox rows go before the inbox rows they point to.
KINDS = (
    Kind("outbox", "outbox_days", 2, "a retried send must still find its row", _outbox),
    Kind("inbox", "inbox_days", 2, "a platform retry must still meet its message (de-duplication)", _inbox),
    Kind("pending_uploads", "pending_uploads_days", 3, "`keep` says an upload expired for 3 days", _pending_uploads),
    Kind("job_runs", "job_runs_days", 62, "this and last month's tiers and statements are claimed there", _job_runs),
    Kind("clicks", "clicks_days", 35, "fraud rules compare a day with the week before; lead touches "
         "come from a visitor's earlier clicks", _clicks),
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


async def delete_batch(session: AsyncSession, kind: Kind, settings: RetentionSettings, now: datetime) -> int:
    """Delete up to batch_size rows of `kind` older than its days; how many this call deleted (a
    row another instance deleted first is not counted here)."""
    cutoff = now - timedelta(days=getattr(settings, kind.setting))
    result = await session.execute(kind.statement(cutoff, settings.batch_size),
                                   execution_options={"synchronize_session": False})
    return int(result.rowcount or 0)
