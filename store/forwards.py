"""Content forwarded to a member's WeCom customers (DESIGN §11, `forward N`): recorded first (one per
chat message), then the mass message (and Moments task) WeCom created for the member to confirm, and
how many customers it reached once they did."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import leave_for_after_commit
from store.models import ContentForward, ContentItem, Member, utcnow

# WeCom keeps a mass message confirmable for a few days; results are read back for this long.
CHECK_DAYS = 3


@dataclass(frozen=True)
class ToSend:
    """A forward claimed for sending: everything the WeCom calls need."""

    id: int
    sender: str
    text: str
    title: str
    description: str
    url: str
    moment: bool


async def record_forward(session: AsyncSession, item: ContentItem, member: Member, *, inbox_id: int | None,
                         text: str, title: str, description: str, url: str, reachable: int,
                         moment: bool) -> ContentForward:
    """The forward as decided, before WeCom is asked (status pending). `inbox_id` is the chat message
    it answers: unique, so processing that message again can never make a second forward."""
    forward = ContentForward(content_id=item.id, member_id=member.id, inbox_id=inbox_id, status="pending",
                             text=text, title=title, description=description, url=url, reachable=reachable,
                             moment=moment, created_at=utcnow())
    session.add(forward)
    await session.flush()
    leave_for_after_commit(session, "forwards")
    return forward


async def pending(session: AsyncSession, now: datetime, inbox_id: int | None = None,
                  days: int = CHECK_DAYS) -> list[int]:
    """Forwards recorded but not sent to WeCom yet (those of one chat message, or all recent ones)."""
    query = select(ContentForward.id).where(ContentForward.status == "pending")
    query = query.where(ContentForward.inbox_id == inbox_id) if inbox_id is not None \
        else query.where(ContentForward.created_at >= now - timedelta(days=days))
    return list(await session.scalars(query.order_by(ContentForward.id)))


async def claim_to_send(session: AsyncSession, forward_id: int) -> ToSend | None:
    """Take a pending forward for sending (pending → sending), or None when someone else did. Once
    committed, the forward is never sent again, whatever happens next: at most one mass message."""
    taken = await session.execute(update(ContentForward)
                                  .where(ContentForward.id == forward_id, ContentForward.status == "pending")
                                  .values(status="sending").execution_options(synchronize_session=False))
    if getattr(taken, "rowcount", 0) != 1:
        return None
    row = (await session.execute(
        select(ContentForward, Member.userid).join(Member, Member.id == ContentForward.member_id)
        .where(ContentForward.id == forward_id))).one()
    forward, sender = row[0], row[1]
    return ToSend(forward.id, sender, forward.text, forward.title, forward.description, forward.url, forward.moment)


async def record_sent(session: AsyncSession, forward_id: int, msgid: str | None, reachable: int,
                      moment_jobid: str | None) -> None:
    """What WeCom answered: created (its msgid, and the Moments task's jobid) or failed."""
    forward = await session.get(ContentForward, forward_id)
    if forward is None:
        return
    forward.status = "created" if msgid else "failed"
    forward.msgid = msgid
    if msgid:
        forward.reachable = reachable
    forward.moment_jobid = moment_jobid
    await session.flush()


async def forwards_to_check(session: AsyncSession, now: datetime, days: int = CHECK_DAYS) -> list[tuple[int, str, str]]:
    """(forward id, msgid, sender's userid) of created forwards younger than `days`, oldest first."""
    rows = await session.execute(
        select(ContentForward.id, ContentForward.msgid, Member.userid)
        .join(Member, Member.id == ContentForward.member_id)
        .where(ContentForward.created_at >= now - timedelta(days=days), ContentForward.msgid.is_not(None))
        .order_by(ContentForward.id))
    return [(row[0], row[1], row[2]) for row in rows]


async def moments_to_check(session: AsyncSession, now: datetime,
                           days: int = CHECK_DAYS) -> list[tuple[int, str, str | None, str]]:
    """(forward id, jobid, moment_id or None, sender's userid) of recent Moments tasks not known to be
    published yet (nor known to have failed)."""
    rows = await session.execute(
        select(ContentForward.id, ContentForward.moment_jobid, ContentForward.moment_id, Member.userid)
        .join(Member, Member.id == ContentForward.member_id)
        .where(ContentForward.created_at >= now - timedelta(days=days), ContentForward.moment_jobid.is_not(None),
               or_(ContentForward.moment_published.is_(None), ContentForward.moment_published.is_(False)),
               or_(ContentForward.moment_id.is_(None), ContentForward.moment_id != ""))
        .order_by(ContentForward.id))
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def record_moment(session: AsyncSession, forward_id: int, moment_id: str, published: bool, now: datetime) -> None:
    """What WeCom says of the Moments task: its moment_id ("" when the task failed) and whether the
    member published it (once published, it stays so)."""
    forward = await session.get(ContentForward, forward_id)
    if forward is not None:
        forward.moment_id = moment_id
        forward.moment_published = bool(forward.moment_published) or published
        forward.checked_at = now
        await session.flush()


async def record_reached(session: AsyncSession, forward_id: int, reached: int, now: datetime) -> None:
    """What WeCom says now: the count only grows while the member sends (never taken back)."""
    forward = await session.get(ContentForward, forward_id)
    if forward is not None:
        forward.reached = max(reached, forward.reached or 0)
        forward.checked_at = now
        await session.flush()


@dataclass(frozen=True)
class ForwardFigures:
    mass_messages: int  # created in WeCom
    moments: int  # Moments tasks created
    moments_published: int
    reached: int  # customers the mass messages reached


async def forward_figures(session: AsyncSession, *, content_id: int | None = None, member_id: int | None = None,
                          since: datetime | None = None, until: datetime | None = None) -> ForwardFigures:
    """Forwards (of one item, by one member, made in [since, until)): mass messages and Moments, customers reached."""
    query = select(func.count(ContentForward.msgid), func.count(ContentForward.moment_jobid),
                   func.count(ContentForward.id).filter(ContentForward.moment_published.is_(True)),
                   func.coalesce(func.sum(ContentForward.reached), 0))
    if content_id is not None:
        query = query.where(ContentForward.content_id == content_id)
    if member_id is not None:
        query = query.where(ContentForward.member_id == member_id)
    if since is not None:
        query = query.where(ContentForward.created_at >= since)
    if until is not None:
        query = query.where(ContentForward.created_at < until)
    row = (await session.execute(query)).one()
    return ForwardFigures(int(row[0]), int(row[1]), int(row[2]), int(row[3]))
