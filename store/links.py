"""Tracked links, shares and clicks."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Click, Lead, Member, Share, Task, TrackedLink, utcnow

CHANNELS = ("poster", "link", "other")


def new_code() -> str:
    """11 URL-safe characters from 64 random bits: short, and not guessable."""
    return secrets.token_urlsafe(8)


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert


async def get_or_create_link(session: AsyncSession, task: Task, member: Member, channel: str) -> TrackedLink:
    """One link per (task, member, channel), created on first use; safe when two requests race."""
    existing = await session.scalar(select(TrackedLink).where(
        TrackedLink.task_id == task.id, TrackedLink.member_id == member.id, TrackedLink.channel == channel))
    if existing is not None:
        return existing
    await session.execute(
        _insert(session)(TrackedLink)
        .values(code=new_code(), task_id=task.id, member_id=member.id, channel=channel, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["task_id", "member_id", "channel"]))
    return (await session.scalars(select(TrackedLink).where(
        TrackedLink.task_id == task.id, TrackedLink.member_id == member.id,
        TrackedLink.channel == channel).execution_options(populate_existing=True))).one()


async def record_share(session: AsyncSession, task: Task, member: Member, channel: str) -> None:
    session.add(Share(task_id=task.id, member_id=member.id, channel=channel, created_at=utcnow()))
    await session.flush()


@dataclass(frozen=True)
class LinkTarget:
    link_id: int
    task_id: int
    member_id: int
    channel: str
    target_url: str
    ended: bool
    task_title: str


async def resolve(session: AsyncSession, code: str) -> LinkTarget | None:
    row = (await session.execute(
        select(TrackedLink.id, TrackedLink.task_id, TrackedLink.member_id, TrackedLink.channel, Task.target_url,
               Task.status, Task.title)
        .join(Task, Task.id == TrackedLink.task_id).where(TrackedLink.code == code))).first()
    if row is None:
        return None
    return LinkTarget(row.id, row.task_id, row.member_id, row.channel, row.target_url, row.status == "ended",
                      row.title)


async def insert_clicks(session: AsyncSession, clicks: list[dict[str, Any]]) -> None:
    """Store a batch; a click already stored (same event id, e.g. a batch retried) is skipped."""
    if clicks:
        await session.execute(_insert(session)(Click).values(clicks).on_conflict_do_nothing(index_elements=["event_id"]))


@dataclass(frozen=True)
class MemberFigures:
    shares: int
    clicks: int  # unique, bots excluded
    leads: int  # leads that came in through this member's links
    rank_in_partner: int | None
    partner_size: int
    rank_overall: int
    members_overall: int


async def member_figures(session: AsyncSession, member: Member, since: datetime | None = None) -> MemberFigures:
    """A member's shares and unique human clicks, and their rank by clicks among partner staff."""
    clicks_by_member = (
        select(TrackedLink.member_id.label("member_id"), func.count(Click.id).label("clicks"))
        .join(Click, Click.link_id == TrackedLink.id)
        .where(Click.is_bot.is_(False), Click.is_unique.is_(True), *([Click.at >= since] if since else []))
        .group_by(TrackedLink.member_id).subquery())
    ranked = (
        select(Member.id, Member.partner_id, func.coalesce(clicks_by_member.c.clicks, 0).label("clicks"))
        .outerjoin(clicks_by_member, clicks_by_member.c.member_id == Member.id)
        .where(Member.role == "partner", Member.active.is_(True)))
    rows = (await session.execute(ranked)).all()
    mine = next((r.clicks for r in rows if r.id == member.id), 0)
    same_partner = [r for r in rows if r.partner_id == member.partner_id]
    shares = await session.scalar(select(func.count()).select_from(Share).where(Share.member_id == member.id))
    leads = await session.scalar(select(func.count()).select_from(Lead).join(TrackedLink, TrackedLink.id == Lead.link_id)
                                 .where(TrackedLink.member_id == member.id))
    return MemberFigures(
        shares=int(shares or 0), clicks=int(mine), leads=int(leads or 0),
        rank_in_partner=1 + sum(1 for r in same_partner if r.clicks > mine) if member.partner_id else None,
        partner_size=len(same_partner),
        rank_overall=1 + sum(1 for r in rows if r.clicks > mine), members_overall=len(rows))
