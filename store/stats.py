"""Funnel, leaderboards and trends (DESIGN §4) for a scope (task / content item / partner / member) and a period.

One definition per figure, used by `me`, `report`, leaderboards, tiers, the digest and exports
(the README's stats section writes them down):
- people reached, people who shared, copies shared; unique visitors (a visitor's first human click
  on a link in 24 h) for the sharer of the link;
- leads: those that came in during the period, for the member whose link brought them; the funnel
  follows this cohort (taken on, won so far), so each step is a subset of the one before;
- deals and revenue: leads won during the period, for the member who holds them whatever the
  lead's source (own link, pool, assignment) — what `roi`, points and commission count too.
Held (fraud-flagged) clicks and leads count nowhere. Clicks come from `click_daily` (kept up to
date as clicks are stored), never from the click table itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, false, func, literal, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from store.links import DAILY_COUNTS, bump_daily, daily_click_rows
from store.models import ClickDaily, ContentItem, Lead, LeadEvent, Member, OutboxMessage, Partner, Share, TrackedLink
# Periods live in store/periods.py; callers name them through this module too.
from store.periods import (EARLIEST_DAY, LATEST_DAY, MAX_DAYS, PERIOD_WORDS,  # noqa: F401
                           BadPeriod, Period, is_period_word, parse_period)
from store.tasks import TASK_CARD


@dataclass(frozen=True)
class Scope:
    """Whose figures: everything, or one task, content item, partner or member (they combine). A content
    item's figures are its copies (shares), the clicks on and leads from their links: the same
    definitions as a task's, with no task cards (a copy is taken, not delivered)."""

    task_id: int | None = None
    partner_id: int | None = None
    member_id: int | None = None
    content_id: int | None = None


def _members_of(scope: Scope) -> Any | None:
    """Ids of the members a scope covers (a subquery), or None when it covers everyone."""
    if scope.member_id is not None:
        return select(Member.id).where(Member.id == scope.member_id)
    if scope.partner_id is not None:
        return select(Member.id).where(Member.partner_id == scope.partner_id)
    return None


@dataclass
class Funnel:
    """A scope's figures for a period. The steps in `STEPS` are each a subset of the one before
    (people, then leads), except unique visitors and leads, which come as multipliers."""

    reached: int = 0  # people: got a task card or shared during the period
    sharers: int = 0  # people who shared (each one was reached)
    shares: int = 0  # copies handed out (posters, links)
    deliveries: int = 0  # task cards sent
    clicks: int = 0  # human clicks
    unique_clicks: int = 0  # unique visitors: a visitor's first click on a link in 24 h
    bot_clicks: int = 0  # excluded from the two above, shown for honesty
    held_clicks: int = 0  # flagged by a fraud rule: excluded until an admin clears them
    leads: int = 0  # leads that came in during the period (the cohort)
    taken: int = 0  # of those, taken on by a member: claimed, assigned, or kept by the sharer
    won: int = 0  # of those, won so far
    deals: int = 0  # leads won during the period, for the member who holds them (what roi and points count)
    revenue: Decimal = field(default_factory=lambda: Decimal(0))  # their amounts
    held_leads: int = 0

    STEPS = ("reached", "sharers", "unique_clicks", "leads", "taken", "won")
    # A step that is not a subset of the one before is shown as "so many per one of those" instead.
    MULTIPLIERS = {"unique_clicks": 1, "leads": 100}

    def rate(self, step: str) -> float | None:
        """`step` over the step before it (None when that one is 0): a share of it for subsets,
        else the number per `MULTIPLIERS[step]` of the step before."""
        before = getattr(self, self.STEPS[self.STEPS.index(step) - 1])
        return getattr(self, step) * self.MULTIPLIERS.get(step, 1) / before if before else None

    def as_dict(self) -> dict[str, Any]:
        return {"reached": self.reached, "sharers": self.sharers, "shares": self.shares,
                "deliveries": self.deliveries, "clicks": self.clicks, "unique_clicks": self.unique_clicks,
                "bot_clicks": self.bot_clicks, "held_clicks": self.held_clicks, "leads": self.leads,
                "taken": self.taken, "won": self.won, "deals": self.deals, "revenue": str(self.revenue),
                "held_leads": self.held_leads}


# How much earlier than its lead an event may be stamped: each instance stamps with its own clock, so
# a lead made on one and claimed a moment later on another whose clock is behind can look older.
CLOCK_SKEW = timedelta(days=1)


def _was_taken(since: datetime) -> Any:
    """Someone took the lead on at some point: claimed it, was assigned it, or kept it as its sharer.
    `since`: when the earliest lead asked about came in (its events are not older, see CLOCK_SKEW)."""
    # A semi-join (hashed once) rather than EXISTS: that probed the events' index once per lead, the
    # costliest part of a month's funnel at 100,000 leads. Only the events since the cohort's start are
    # hashed: a month's funnel hashed every take of the whole history (~40 -> ~28 ms at 100,000 leads
    # over 90 days, and it no longer grows with the history).
    return Lead.id.in_(select(LeadEvent.lead_id).where(LeadEvent.kind.in_(("claimed", "assigned")),
                                                       LeadEvent.member_id.is_not(None),
                                                       LeadEvent.at >= since - CLOCK_SKEW))


def _in(column: Any, start: datetime, end: datetime) -> list[Any]:
    return [column >= start, column < end]


def _brought_by(members: Any) -> Any:
    """Leads that came through a tracked link of these members (the sharers)."""
    return Lead.link_id.in_(select(TrackedLink.id).where(TrackedLink.member_id.in_(members)))


def _source(scope: Scope) -> list[Any]:
    """A lead's task or content item, as the scope names one: its task, or a copy's link it came through."""
    return [*([Lead.task_id == scope.task_id] if scope.task_id is not None else []),
            *([Lead.link_id.in_(select(TrackedLink.id).where(TrackedLink.content_id == scope.content_id))]
              if scope.content_id is not None else [])]


def _lead_conditions(scope: Scope, period: Period, held_too: bool = False) -> list[Any]:
    """The scope's leads that came in during the period; held (flagged) ones only if asked."""
    members = _members_of(scope)
    return [*_in(Lead.created_at, period.start, period.end), *([] if held_too else [Lead.held.is_(False)]),
            *_source(scope),
            *([_brought_by(members)] if members is not None else [])]


def _deal_conditions(scope: Scope, period: Period) -> list[Any]:
    """Leads won during the period, for the member who holds them, whatever their source."""
    members = _members_of(scope)
    return [Lead.status == "won", *_in(Lead.won_at, period.start, period.end), Lead.held.is_(False),
            *_source(scope),
            *([Lead.owner_id.in_(members)] if members is not None else [])]


def _link_conditions(scope: Scope) -> list[Any]:
    members = _members_of(scope)
    return [*([TrackedLink.task_id == scope.task_id] if scope.task_id is not None else []),
            *([TrackedLink.content_id == scope.content_id] if scope.content_id is not None else []),
            *([TrackedLink.member_id.in_(members)] if members is not None else [])]


def _share_conditions(scope: Scope, period: Period) -> list[Any]:
    members = _members_of(scope)
    return [*_in(Share.created_at, period.start, period.end),
            *([Share.task_id == scope.task_id] if scope.task_id is not None else []),
            *([Share.content_id == scope.content_id] if scope.content_id is not None else []),
            *([Share.member_id.in_(members)] if members is not None else [])]


def _card_conditions(scope: Scope, period: Period) -> list[Any]:
    members = _members_of(scope)
    return [OutboxMessage.purpose == TASK_CARD, OutboxMessage.status == "sent",
            *_in(OutboxMessage.sent_at, period.start, period.end),
            *([OutboxMessage.task_id == scope.task_id] if scope.task_id is not None else []),
            *([false()] if scope.content_id is not None else []),  # no card is a content item's
            *([OutboxMessage.recipient.in_(select(Member.userid).where(Member.id.in_(members)))]
              if members is not None else [])]


async def funnel(session: AsyncSession, scope: Scope, period: Period) -> Funnel:
    deliveries = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(*_card_conditions(scope, period)))
    shares, sharers = (await session.execute(select(func.count(), func.count(Share.member_id.distinct()))
                                             .where(*_share_conditions(scope, period)))).one()
    reached = await session.scalar(select(func.count()).select_from(union(
        select(Member.id).join(OutboxMessage, OutboxMessage.recipient == Member.userid)
        .where(*_card_conditions(scope, period)),
        select(Share.member_id).where(*_share_conditions(scope, period))).subquery()))
    clicks = (await session.execute(
        select(*(func.coalesce(func.sum(getattr(ClickDaily, name)), 0) for name in DAILY_COUNTS))
        .join(TrackedLink, TrackedLink.id == ClickDaily.link_id)
        .where(ClickDaily.day >= period.first_day, ClickDaily.day <= period.last_day, *_link_conditions(scope)))).one()
    counted = Lead.held.is_(False)
    leads = (await session.execute(
        select(func.count().filter(counted), func.count().filter(counted, _was_taken(period.start)),
               func.count().filter(counted, Lead.status == "won"), func.count().filter(Lead.held.is_(True)))
        .where(*_lead_conditions(scope, period, held_too=True)))).one()
    deals, revenue = (await session.execute(select(func.count(), func.coalesce(func.sum(Lead.won_amount), 0))
                                            .where(*_deal_conditions(scope, period)))).one()
    return Funnel(reached=int(reached or 0), sharers=int(sharers or 0), shares=int(shares or 0),
                  deliveries=int(deliveries or 0), clicks=int(clicks[0]), unique_clicks=int(clicks[1]),
                  bot_clicks=int(clicks[2]), held_clicks=int(clicks[3]), leads=int(leads[0]), taken=int(leads[1]),
                  won=int(leads[2]), held_leads=int(leads[3]), deals=int(deals or 0),
                  revenue=Decimal(revenue or 0).quantize(Decimal("0.01")))


@dataclass
class Standing:
    """One member's or partner's figures in a period, for leaderboards, `me` and tiers."""

    key: int
    name: str
    partner_id: int | None = None
    shares: int = 0
    unique_clicks: int = 0
    leads: int = 0  # brought in through their links
    won: int = 0  # deals: won during the period by them, whatever the lead's source
    revenue: Decimal = field(default_factory=lambda: Decimal(0))
    active: bool = True  # members who left still count for their company, but are not ranked

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shares": self.shares, "unique_clicks": self.unique_clicks,
                "leads": self.leads, "won": self.won, "revenue": str(self.revenue)}


METRICS = ("shares", "unique_clicks", "leads", "revenue")


async def member_standings(session: AsyncSession, period: Period, partner_id: int | None = None,
                           task_id: int | None = None, content_id: int | None = None) -> dict[int, Standing]:
    """Every partner member's figures (zeros included, so ranks count everyone; see `active`)."""
    everyone = Scope(task_id=task_id, content_id=content_id)
    # One statement, each figure summed per member first and joined to the members: as five they
    # cost five round trips and ~8,000 rows through SQLAlchemy at 2,000 members, the leaderboards'
    # Python CPU on the event loop the funnel and the trend share.
    shares = (select(Share.member_id, func.count().label("n")).where(*_share_conditions(everyone, period))
              .group_by(Share.member_id).subquery())
    clicks = (select(TrackedLink.member_id, func.sum(ClickDaily.unique_clicks).label("n"))
              .join(TrackedLink, TrackedLink.id == ClickDaily.link_id)
              .where(ClickDaily.day >= period.first_day, ClickDaily.day <= period.last_day, *_link_conditions(everyone))
              .group_by(TrackedLink.member_id).subquery())
    leads = (select(TrackedLink.member_id, func.count().label("n")).select_from(Lead)
             .join(TrackedLink, TrackedLink.id == Lead.link_id).where(*_lead_conditions(everyone, period))
             .group_by(TrackedLink.member_id).subquery())
    deals = (select(Lead.owner_id.label("member_id"), func.count().label("n"),
                    func.coalesce(func.sum(Lead.won_amount), 0).label("revenue"))
             .where(*_deal_conditions(everyone, period)).group_by(Lead.owner_id).subquery())
    query = (select(Member.id, Member.name, Member.partner_id, Member.active, shares.c.n, clicks.c.n, leads.c.n,
                    deals.c.n, deals.c.revenue)
             .outerjoin(shares, shares.c.member_id == Member.id).outerjoin(clicks, clicks.c.member_id == Member.id)
             .outerjoin(leads, leads.c.member_id == Member.id).outerjoin(deals, deals.c.member_id == Member.id)
             .where(Member.role == "partner", *([Member.partner_id == partner_id] if partner_id is not None else [])))
    return {key: Standing(key, name, partner, int(shared or 0), int(clicked or 0), int(brought or 0), int(won or 0),
                          Decimal(revenue or 0), active)
            for key, name, partner, active, shared, clicked, brought, won, revenue in await session.execute(query)}


async def claims(session: AsyncSession, member_id: int, period: Period) -> int:
    """Leads the member claimed from a pool during the period (being assigned one is not a claim)."""
    return int(await session.scalar(select(func.count()).select_from(LeadEvent).where(
        LeadEvent.member_id == member_id, LeadEvent.kind == "claimed", *_in(LeadEvent.at, period.start, period.end))) or 0)


async def partner_standings(session: AsyncSession, members: dict[int, Standing]) -> list[Standing]:
    names = dict((await session.execute(select(Partner.id, Partner.name))).all())
    partners: dict[int, Standing] = {}
    for m in members.values():
        if m.partner_id is None:
            continue
        p = partners.setdefault(m.partner_id, Standing(m.partner_id, names.get(m.partner_id, "?")))
        p.shares += m.shares
        p.unique_clicks += m.unique_clicks
        p.leads += m.leads
        p.won += m.won
        p.revenue += m.revenue
    return list(partners.values())


@dataclass
class ContentStanding:
    """One content item's figures in a period, for the top-content board and the export."""

    key: int
    title: str
    shares: int = 0  # copies taken
    unique_clicks: int = 0
    leads: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.key, "title": self.title, "shares": self.shares,
                "unique_clicks": self.unique_clicks, "leads": self.leads}


async def content_standings(session: AsyncSession, scope: Scope, period: Period) -> list[ContentStanding]:
    """The content items with copies taken, unique clicks or leads in the period (within the scope's
    partner or member), best first by unique clicks, then leads, then copies: the funnel's definitions,
    held and bot clicks excluded."""
    table: dict[int, ContentStanding] = {}

    def row(content_id: int) -> ContentStanding:
        return table.setdefault(content_id, ContentStanding(content_id, ""))

    for content_id, count in await session.execute(
            select(Share.content_id, func.count()).where(Share.content_id.is_not(None), *_share_conditions(scope, period))
            .group_by(Share.content_id)):
        row(content_id).shares = int(count)
    for content_id, count in await session.execute(
            select(TrackedLink.content_id, func.sum(ClickDaily.unique_clicks)).join(TrackedLink, TrackedLink.id == ClickDaily.link_id)
            .where(TrackedLink.content_id.is_not(None), ClickDaily.day >= period.first_day, ClickDaily.day <= period.last_day,
                   *_link_conditions(scope))
            .group_by(TrackedLink.content_id)):
        if count:
            row(content_id).unique_clicks = int(count)
    for content_id, count in await session.execute(
            select(TrackedLink.content_id, func.count()).select_from(Lead).join(TrackedLink, TrackedLink.id == Lead.link_id)
            .where(TrackedLink.content_id.is_not(None), *_lead_conditions(scope, period)).group_by(TrackedLink.content_id)):
        row(content_id).leads = int(count)
    for content_id, title in await session.execute(select(ContentItem.id, ContentItem.title)
                                                   .where(ContentItem.id.in_(list(table)))):
        table[content_id].title = title
    return sorted(table.values(), key=lambda s: (-s.unique_clicks, -s.leads, -s.shares, s.key))


def active(standings: dict[int, Standing]) -> list[Standing]:
    """The members a leaderboard ranks: those still active."""
    return [s for s in standings.values() if s.active]


def ranked(standings: list[Standing], metric: str) -> list[Standing]:
    """Best first; ties broken by the other metrics, then by name, so the order is stable."""
    others = [m for m in METRICS if m != metric]
    return sorted(standings, key=lambda s: (-getattr(s, metric), *(-getattr(s, m) for m in others), s.name))


def rank_of(standings: list[Standing], key: int, metric: str) -> int:
    """1 + how many did strictly better (equals share a rank)."""
    mine = next(getattr(s, metric) for s in standings if s.key == key)
    return 1 + sum(1 for s in standings if getattr(s, metric) > mine)


async def trend(session: AsyncSession, scope: Scope, period: Period) -> dict[str, list[int]]:
    """Per local day of the period: shares, unique clicks and leads."""
    days = period.days()
    index = {day: i for i, day in enumerate(days)}
    series = {"shares": [0] * len(days), "unique_clicks": [0] * len(days), "leads": [0] * len(days)}
    series["shares"] = await _per_day(session, Share.created_at, _share_conditions(scope, period), period)
    for day, count in await session.execute(
            select(ClickDaily.day, func.sum(ClickDaily.unique_clicks)).join(TrackedLink, TrackedLink.id == ClickDaily.link_id)
            .where(ClickDaily.day >= period.first_day, ClickDaily.day <= period.last_day, *_link_conditions(scope))
            .group_by(ClickDaily.day)):
        series["unique_clicks"][index[day]] = int(count or 0)
    series["leads"] = await _per_day(session, Lead.created_at, _lead_conditions(scope, period), period)
    return series


async def _per_day(session: AsyncSession, at: Any, conditions: list[Any], period: Period) -> list[int]:
    """Rows per local day of the period, counted by the database (the rows themselves stay there):
    each row's day is found by comparing `at` with the days' starts, which works alike everywhere."""
    zone, days = ZoneInfo(period.timezone), period.days()
    starts = [datetime.combine(day, time(0), tzinfo=zone) for day in days[1:]]
    day = case(*((at < start, i) for i, start in enumerate(starts)), else_=len(starts)) if starts else literal(0)
    counts = [0] * len(days)
    for i, count in await session.execute(select(day.label("day"), func.count()).where(*conditions).group_by("day")):
        counts[int(i)] = int(count)
    return counts


async def fill_click_daily(session: AsyncSession, zone: str) -> int:
    """Clicks stored before the daily counts existed get counted once; 0 if there is nothing to do."""
    from store.models import Click

    if await session.scalar(select(ClickDaily.id).limit(1)) is not None \
            or await session.scalar(select(Click.id).limit(1)) is None:
        return 0
    return await rebuild_click_daily(session, zone)


async def rebuild_click_daily(session: AsyncSession, zone: str) -> int:
    """Recount the daily click table from the clicks (after an upgrade, or a time-zone change)."""
    from store.models import Click

    await session.execute(ClickDaily.__table__.delete())
    result = await session.stream(select(Click.link_id, Click.at, Click.is_bot, Click.is_unique)
                                  .execution_options(yield_per=5000))
    rows = daily_click_rows([row async for row in result], zone)
    for start in range(0, len(rows), 5000):
        await session.execute(ClickDaily.__table__.insert(), rows[start:start + 5000])
    held = await session.execute(select(Click.link_id, Click.at, Click.is_bot, Click.is_unique).where(Click.held.is_(True)))
    await bump_daily(session, held.all(), zone, hold=True)
    return len(rows)

