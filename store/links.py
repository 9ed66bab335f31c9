"""Tracked links, shares and clicks."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from collections import defaultdict
from datetime import date, datetime, timezone as utc_zone
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
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



# A click as the recorder hands it over: its fields as text, in this order (event_id, link_id, at in
# seconds since 1970, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique; the flags "1" or
# "0"). Text because that is how clicks come back from the Redis stream, and what costs least to send.
ClickRow = Sequence[str]
CLICK_ROW_SEPARATOR = "\x1f"  # never inside a field (the recorder makes sure)

# PostgreSQL: a batch goes as one separated text per column, is split by the database, and is stored
# and its daily counts grown by one statement (atomic by itself, so it may run in autocommit). Per
# click that costs ~1/10 of an executemany through the ORM (~21 µs CPU per click there), whose
# per-value work (and asyncpg's, for arrays) was most of it. The local day of each click comes from
# Python (ZoneInfo, as everywhere else). A click already stored (same event id: a batch written
# twice) is skipped and counted nowhere. Rows are sorted by day and link as daily_click_rows sorts
# them: two instances lock click_daily rows in one order.
_STORE_CLICK_ROWS = text("""
WITH given AS (
    SELECT DISTINCT ON (event_id) * FROM unnest(
        string_to_array(:event_ids, E'\\x1f'), CAST(string_to_array(:link_ids, E'\\x1f') AS integer[]),
        CAST(string_to_array(:ats, E'\\x1f') AS float8[]), string_to_array(:visitor_ids, E'\\x1f'),
        string_to_array(:ip_hashes, E'\\x1f'), string_to_array(:user_agents, E'\\x1f'),
        string_to_array(:referrers, E'\\x1f'), CAST(string_to_array(:is_bots, E'\\x1f') AS boolean[]),
        CAST(string_to_array(:is_uniques, E'\\x1f') AS boolean[]), CAST(string_to_array(:days, E'\\x1f') AS date[]))
        AS g(event_id, link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, day)
), stored AS (
    -- An empty text splits into no values at all: a batch whose every user agent or referrer is
    -- empty leaves that column NULL here.
    INSERT INTO clicks (event_id, link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, held)
    SELECT event_id, link_id, to_timestamp(at), visitor_id, ip_hash, coalesce(user_agent, ''),
           coalesce(referrer, ''), is_bot, is_unique, false
    FROM given
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
INSERT INTO click_daily (day, link_id, clicks, unique_clicks, bot_clicks, held_clicks)
SELECT g.day, g.link_id, count(*) FILTER (WHERE NOT g.is_bot), count(*) FILTER (WHERE NOT g.is_bot AND g.is_unique),
       count(*) FILTER (WHERE g.is_bot), 0
FROM stored JOIN given g USING (event_id)
GROUP BY g.day, g.link_id
ORDER BY g.day, g.link_id
ON CONFLICT (day, link_id) DO UPDATE SET clicks = click_daily.clicks + excluded.clicks,
    unique_clicks = click_daily.unique_clicks + excluded.unique_clicks,
    bot_clicks = click_daily.bot_clicks + excluded.bot_clicks
""")


def local_days(instants: Iterable[float], timezone: str) -> list[date]:
    """The local date of each instant. Zone offsets and their changes fall on whole quarter hours
    (for any time a click can have), so a date is found once per UTC quarter hour, not per click."""
    zone = ZoneInfo(timezone)
    found: dict[int, date] = {}
    days = []
    for at in instants:
        quarter = int(at // 900)
        day = found.get(quarter)
        if day is None:
            day = found[quarter] = datetime.fromtimestamp(quarter * 900, zone).date()
        days.append(day)
    return days


def click_rows_in_one_statement(dialect: str) -> bool:
    """Whether store_click_rows is one statement on this database (it may then run in
    Database.single_statement: no BEGIN and COMMIT round trips)."""
    return dialect == "postgresql"


async def store_click_rows(session: AsyncSession, rows: Sequence[ClickRow], timezone: str = "UTC") -> None:
    """insert_clicks for the recorder's batches (ClickRow): the same rows stored, the same counts grown."""
    if not rows:
        return
    if not click_rows_in_one_statement(session.bind.dialect.name):
        await insert_clicks(session, [
            {"event_id": r[0], "link_id": int(r[1]), "at": datetime.fromtimestamp(float(r[2]), utc_zone.utc),
             "visitor_id": r[3], "ip_hash": r[4], "user_agent": r[5], "referrer": r[6], "is_bot": r[7] == "1",
             "is_unique": r[8] == "1"} for r in rows], timezone)
        return
    columns = list(zip(*rows))
    days = local_days(map(float, columns[2]), timezone)
    await session.execute(_STORE_CLICK_ROWS, {
        **{name: CLICK_ROW_SEPARATOR.join(column) for name, column in zip(
            ("event_ids", "link_ids", "ats", "visitor_ids", "ip_hashes", "user_agents", "referrers", "is_bots",
             "is_uniques"), columns)},
        "days": CLICK_ROW_SEPARATOR.join(map(date.isoformat, days))})
