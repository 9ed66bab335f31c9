"""The outbox: messages to send, written in the same transaction as what caused them.

Senders claim rows with a conditional UPDATE (attempts is the claim token), send, then mark them.
A row whose sender died is taken over after its lease and resent with the platform's duplicate
check on, so a crash between sending and marking does not show the member the message twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import OutboxMessage, utcnow


@dataclass(frozen=True)
class Claim:
    id: int
    attempts: int
    channel: str
    recipient: str
    payload: dict[str, Any]


async def add(session: AsyncSession, *, channel: str, recipient: str, payload: dict[str, Any],
              inbox_id: int | None = None, dedupe_key: str | None = None, claimed: bool = False) -> Claim:
    """Queue a message. `claimed` queues it already claimed by the caller, who sends it right after
    the commit (saving a claim round trip); should the caller die, the lease hands it to others."""
    now = utcnow()
    row = OutboxMessage(channel=channel, recipient=recipient, kind=payload["kind"], payload=payload,
                        inbox_id=inbox_id, dedupe_key=dedupe_key, status="sending" if claimed else "pending",
                        attempts=1 if claimed else 0, claimed_at=now if claimed else None,
                        next_attempt_at=now, created_at=now)
    session.add(row)
    await session.flush()
    return Claim(row.id, row.attempts, channel, recipient, payload)


def _claimable(now: datetime, lease: timedelta):  # type: ignore[no-untyped-def]
    return or_(
        and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - lease),
    )


async def claim(session: AsyncSession, outbox_id: int, lease: timedelta) -> Claim | None:
    now = utcnow()
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, _claimable(now, lease))
        .values(status="sending", claimed_at=now, attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage.attempts, OutboxMessage.channel, OutboxMessage.recipient,
                   OutboxMessage.payload)
    )
    row = result.first()
    return Claim(outbox_id, row.attempts, row.channel, row.recipient, row.payload) if row else None


async def mark_sent(session: AsyncSession, claim: Claim) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempts)
        .values(status="sent", sent_at=utcnow(), last_error=None)
    )


async def mark_failed(session: AsyncSession, claim: Claim, error: str, retry_at: datetime | None) -> None:
    """Record the error; with retry_at the row goes back to pending, without it it fails for good."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempts)
        .values(status="pending" if retry_at else "failed", last_error=error[:1000],
                next_attempt_at=retry_at or utcnow())
    )


async def claimable_ids(session: AsyncSession, lease: timedelta, limit: int = 200) -> list[int]:
    now = utcnow()
    rows = await session.scalars(
        select(OutboxMessage.id).where(_claimable(now, lease)).order_by(OutboxMessage.id).limit(limit)
    )
    return list(rows)
