"""The inbox: received messages, stored before acknowledgement, claimed by one worker at a time.

A claim is a conditional UPDATE, so it works the same across processes on SQLite and PostgreSQL;
`attempts` doubles as the claim token: only the holder of the latest claim can finish a message.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import dialect_insert
from store.models import InboxMessage, Member, utcnow


@dataclass(frozen=True)
class Sender:
    """Who sent a message, as read when it was stored (add_reading_sender): the active member with
    that WeCom userid (their partner loaded), or None for a stranger. Detached from any session."""

    member: Member | None
    read_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Claim:
    id: int
    attempts: int
    payload: dict[str, Any]
    received_at: datetime | None = None
    sender: Sender | None = None  # None: not read yet


def _insert_statement(insert: Any) -> Any:
    # On the table (Core), not the mapped class: an ORM insert goes through the ORM's bulk-insert
    # machinery on every execution, about a third of this statement's CPU in the callback profile.
    c = _INBOX.c
    return (
        insert(_INBOX)
        .values(channel=bindparam("channel"), dedupe_key=bindparam("dedupe_key"), user_id=bindparam("user_id"),
                payload=bindparam("payload", type_=c.payload.type), status=bindparam("status"),
                attempts=bindparam("attempts"), claimed_at=bindparam("claimed_at", type_=c.claimed_at.type),
                received_at=bindparam("received_at", type_=c.received_at.type))
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(c.id)
    )


_INBOX = InboxMessage.__table__
# Built once per dialect: building a statement costs more than running it on this path (every callback).
_INSERTS: dict[Any, Any] = {}


async def add(session: AsyncSession, *, channel: str, dedupe_key: str, user_id: str,
              payload: dict[str, Any], claimed_at: datetime | None = None) -> int | None:
    """Store a received message; None when the same key was stored before (a platform retry).
    `claimed_at`: store it already claimed (attempts 1) by the caller, who processes it right away
    (saving a claim's round trips); should the caller die, the lease hands it to others."""
    # One statement, no savepoint: this runs on every callback before it is acknowledged.
    insert = dialect_insert(session)
    statement = _INSERTS.get(insert)
    if statement is None:
        statement = _INSERTS[insert] = _insert_statement(insert)
    return await session.scalar(statement, {
        "channel": channel, "dedupe_key": dedupe_key, "user_id": user_id, "payload": payload,
        "status": "processing" if claimed_at else "pending", "attempts": 1 if claimed_at else 0,
        "claimed_at": claimed_at, "received_at": claimed_at or utcnow()})


async def add_reading_sender(session: AsyncSession, *, channel: str, dedupe_key: str, user_id: str,
                             payload: dict[str, Any], claimed_at: datetime) -> tuple[int | None, Sender | None]:
    """`add`, and on PostgreSQL read the sender (a WeCom userid's member) in the same statement: the
    member lookup that processing the message starts with costs no round trip of its own. The Sender
    is None where it was not read (SQLite)."""
    if session.bind.dialect.name != "postgresql":
        return await add(session, channel=channel, dedupe_key=dedupe_key, user_id=user_id, payload=payload,
                         claimed_at=claimed_at), None
    statement = _INSERTS.get("reading sender")
    if statement is None:
        stored = _insert_statement(postgresql.insert).cte("stored")
        # The lookup of store.bindings.member_for (HOME), joined to the row just stored; the member's
        # partner comes along (Member.partner is loaded joined), as it does there.
        statement = _INSERTS["reading sender"] = select(stored.c.id, Member).select_from(stored).outerjoin(
            Member, and_(Member.userid == bindparam("user_id"), Member.active.is_(True)))
    row = (await session.execute(statement, {
        "channel": channel, "dedupe_key": dedupe_key, "user_id": user_id, "payload": payload,
        "status": "processing", "attempts": 1, "claimed_at": claimed_at, "received_at": claimed_at})).first()
    return (None, None) if row is None else (row[0], Sender(row[1]))


def _claimable(now: datetime, lease: timedelta):  # type: ignore[no-untyped-def]
    return or_(
        InboxMessage.status == "pending",
        and_(InboxMessage.status == "processing", InboxMessage.claimed_at < now - lease),
    )


async def claim(session: AsyncSession, inbox_id: int, lease: timedelta) -> Claim | None:
    now = utcnow()
    result = await session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == inbox_id, _claimable(now, lease))
        .values(status="processing", claimed_at=now, attempts=InboxMessage.attempts + 1)
        .returning(InboxMessage.attempts, InboxMessage.payload, InboxMessage.received_at)
    )
    row = result.first()
    return Claim(inbox_id, row.attempts, row.payload, row.received_at) if row else None


def finish_statement(new_status: str | None = None) -> Any:
    """The UPDATE that finishes a claim (`new_status` fixed, or a parameter), for finish and for a
    statement that finishes a message along with writing its reply (outbox.add_finishing)."""
    return (
        update(InboxMessage)
        .where(InboxMessage.id == bindparam("claim_id"), InboxMessage.status == "processing",
               InboxMessage.attempts == bindparam("claim_attempts"))
        .values(status=new_status or bindparam("new_status"),
                processed_at=bindparam("now", type_=InboxMessage.processed_at.type),
                error=None if new_status else bindparam("error"))
        .execution_options(synchronize_session=False)
    )


_FINISH = finish_statement()


async def finish(session: AsyncSession, claim: Claim, status: str, error: str | None = None) -> bool:
    """Mark done/failed if this claim is still the latest; False means someone took it over."""
    result = await session.execute(_FINISH, {"claim_id": claim.id, "claim_attempts": claim.attempts,
                                             "new_status": status, "now": utcnow(), "error": error})
    return result.rowcount == 1


async def renew(session: AsyncSession, claim: Claim) -> bool:
    """Restart a claim's lease (its message waited for a free worker); False if it was taken over."""
    result = await session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == claim.id, InboxMessage.status == "processing",
               InboxMessage.attempts == claim.attempts)
        .values(claimed_at=utcnow())
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


async def release(session: AsyncSession, claim: Claim, error: str) -> None:
    """Give a claimed message back for another try (after a transient failure)."""
    await session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == claim.id, InboxMessage.attempts == claim.attempts)
        .values(status="pending", error=error)
    )


async def claimable_ids(session: AsyncSession, lease: timedelta, limit: int = 100) -> list[int]:
    now = utcnow()
    rows = await session.scalars(
        select(InboxMessage.id).where(_claimable(now, lease)).order_by(InboxMessage.id).limit(limit)
    )
    return list(rows)
