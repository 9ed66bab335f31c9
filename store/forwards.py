"""Content forwarded to a member's WeCom customers (DESIGN §11, `forward N`): the mass message WeCom
created for the member to confirm, and how many customers it reached once they did."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ContentForward, ContentItem, Member, utcnow

# WeCom keeps a mass message confirmable for a few days; results are read back for this long.
CHECK_DAYS = 3


async def record_forward(session: AsyncSession, item: ContentItem, member: Member, msgid: str,
                         reachable: int) -> ContentForward:
    forward = ContentForward(content_id=item.id, member_id=member.id, msgid=msgid, reachable=reachable,
                             created_at=utcnow())
    session.add(forward)
    await session.flush()
    return forward


async def forwards_to_check(session: AsyncSession, now: datetime, days: int = CHECK_DAYS) -> list[tuple[int, str, str]]:
    """(forward id, msgid, sender's userid) of forwards younger than `days`, oldest first."""
    rows = await session.execute(
        select(ContentForward.id, ContentForward.msgid, Member.userid)
        .join(Member, Member.id == ContentForward.member_id)
        .where(ContentForward.created_at >= now - timedelta(days=days)).order_by(ContentForward.id))
    return [(row[0], row[1], row[2]) for row in rows]


async def record_reached(session: AsyncSession, forward_id: int, reached: int, now: datetime) -> None:
    """What WeCom says now: the count only grows while the member sends (never taken back)."""
    forward = await session.get(ContentForward, forward_id)
    if forward is not None:
        forward.reached = max(reached, forward.reached or 0)
        forward.checked_at = now
        await session.flush()


async def customers_reached(session: AsyncSession, *, content_id: int | None = None, member_id: int | None = None,
                            since: datetime | None = None) -> int:
    """Customers the forwards (of one item, by one member, since a time) actually reached."""
    query = select(func.coalesce(func.sum(ContentForward.reached), 0))
    if content_id is not None:
        query = query.where(ContentForward.content_id == content_id)
    if member_id is not None:
        query = query.where(ContentForward.member_id == member_id)
    if since is not None:
        query = query.where(ContentForward.created_at >= since)
    return int(await session.scalar(query) or 0)
