"""Tracked links, shares and clicks."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from collections import defaultdict
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import dialect_insert
from store.models import Click, ClickDaily, ContentItem, Member, Share, Task, TrackedLink, utcnow

CHANNELS = ("poster", "link", "other")


def new_code() -> str:
    """11 URL-safe characters from 64 random bits: short, and not guessable."""
    return secrets.token_urlsafe(8)


async def get_or_create_link(session: AsyncSession, task: Task, member: Member, channel: str) -> TrackedLink:
    """One link per (task, member, channel), created on first use; safe when two requests race."""
    existing = await session.scalar(select(TrackedLink).where(
        TrackedLink.task_id == task.id, TrackedLink.member_id == member.id, TrackedLink.channel == channel))
    if existing is not None:
        return existing
    await session.execute(
        dialect_insert(session)(TrackedLink)
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
    task_id: int | None
    member_id: int
    channel: str
    target_url: str  # empty for a talk script's link: the sharer's sign-up form is where it goes
    ended: bool
    task_title: str  # the task's title, or the content item's
    content_id: int | None = None
    content_kind: str = ""  # a content item's kind: a file's link is its download page /d/<code>
    gated: bool = False  # a file behind the sign-up form
    ends_at: datetime | None = None  # a content item's expiry: the link ends then without any change


async def resolve(session: AsyncSession, code: str) -> LinkTarget | None:
    row = (await session.execute(
        select(TrackedLink.id, TrackedLink.task_id, TrackedLink.member_id, TrackedLink.channel, Task.target_url,
               Task.status, Task.title, TrackedLink.content_id)
        .outerjoin(Task, Task.id == TrackedLink.task_id).where(TrackedLink.code == code))).first()
    if row is None:
        return None
    if row.content_id is None:
        return LinkTarget(row.id, row.task_id, row.member_id, row.channel, row.target_url, row.status == "ended",
                          row.title)
    item = await session.get(ContentItem, row.content_id)
    if item is None:
        return None
    # A retired or expired item's links end like an ended task's.
    ended = item.status != "published" or (item.expires_at is not None and item.expires_at <= utcnow())
    return LinkTarget(row.id, None, row.member_id, row.channel, item.url, ended, item.title, item.id, item.kind,
                      item.gated, item.expires_at)


async def targets_version(session: AsyncSession) -> tuple[Any, ...]:
    """Changes whenever a task or a content item is changed, added or deleted (ended, retired, its
    URL or expiry edited): what a cached link target depends on. One cheap query for a cache to
    ask every second instead of reading each link's target on every redirect."""
    return tuple((await session.execute(select(
        select(func.max(Task.updated_at)).scalar_subquery(), select(func.count(Task.id)).scalar_subquery(),
        select(func.max(ContentItem.updated_at)).scalar_subquery(),
        select(func.count(ContentItem.id)).scalar_subquery()))).one())


DAILY_COUNTS = ("clicks", "unique_clicks", "bot_clicks", "held_clicks")


def daily_click_rows(clicks: Any, timezone: str, hold: bool | None = None) -> list[dict[str, Any]]:
    """(link_id, at, is_bot, is_unique) rows → click_daily rows (or, with `hold`, the change when a
    fraud flag holds them back or releases them), sorted by day and link: two instances writing at
    once then lock the same rows in the same order (no deadlock)."""
    zone = ZoneInfo(timezone)
    counts: dict[tuple[date, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for link_id, at, is_bot, is_unique in clicks:
        row = counts[(at.astimezone(zone).date(), link_id)]
        if is_bot:
            row[2] += 1
        else:
            row[0] += 1
            row[1] += int(is_unique)
    sign = {None: 1, True: -1, False: 1}[hold]
    return [{"day": day, "link_id": link_id, "clicks": sign * c, "unique_clicks": sign * u,
             "bot_clicks": b if hold is None else 0, "held_clicks": 0 if hold is None else -sign * c}
            for (day, link_id), (c, u, b) in sorted(counts.items())]


async def bump_daily(session: AsyncSession, clicks: Any, timezone: str, hold: bool | None = None) -> None:
    """Add stored clicks to their days, or move flagged ones out of (hold) or back into the counts."""
    values = daily_click_rows(clicks, timezone, hold)
    if not values:
        return
    upsert = dialect_insert(session)(ClickDaily).values(values)
    await session.execute(upsert.on_conflict_do_update(
        index_elements=["day", "link_id"],
        set_={name: getattr(ClickDaily, name) + getattr(upsert.excluded, name) for name in DAILY_COUNTS}))


async def insert_clicks(session: AsyncSession, clicks: list[dict[str, Any]], timezone: str = "UTC") -> None:
    """Store a batch; a click already stored (same event id, e.g. a batch retried) is skipped.
    The daily counts grow by exactly the clicks this call stored, in the same transaction."""
    if not clicks:
        return
    # The rows as executemany parameters, not one multi-row VALUES: the statement is then the same
    # for every batch size and SQLAlchemy compiles it once (batches are still sent as multi-row
    # INSERTs by its insertmanyvalues). Compiling a fresh VALUES list per flush cost ~13 % of a
    # redirect's CPU (py-spy under bench/redirect.py).
    stored = (await session.execute(
        dialect_insert(session)(Click).on_conflict_do_nothing(index_elements=["event_id"])
        .returning(Click.link_id, Click.at, Click.is_bot, Click.is_unique), clicks)).all()
    await bump_daily(session, stored, timezone)
