"""Fraud protection (DESIGN §1, §4): explainable rules flag suspicious clicks and leads, which are
then *held*: left out of the funnel, leaderboards, attribution, tiers and points until an admin
clears them (they count again) or rejects them (they stay out). Each decision is an audit row.

Rules look at the last `scan_window_hours`; each click or lead is flagged at most once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import Refusal
from store.links import bump_daily
from store.models import Click, ClickDaily, Flag, FlagDecision, Lead, Member, TrackedLink, utcnow

RULE_NAMES = {
    "visitor_flood": ("one visitor clicked one link too often", "同一访客反复点击同一链接"),
    "ip_flood": ("one IP clicked one link too often", "同一 IP 反复点击同一链接"),
    "burst": ("a burst far above the link's usual rate", "点击量远超该链接平时水平"),
    "headless": ("clicks from scripts or headless browsers", "来自脚本或无头浏览器的点击"),
    "lead_ratio": ("far more leads per click than other partners", "线索/点击比远高于其他伙伴"),
    "duplicate_phone": ("the same phone came through another partner", "同一手机号已由其他伙伴提交"),
    "invalid_phone": ("the phone number is not valid", "手机号无效"),
}


@dataclass
class FraudSettings:
    """The thresholds of the rules (`[fraud]` in config), over the last `scan_window_hours`."""

    visitor_clicks_per_day: int = 20  # one visitor on one link
    ip_clicks_per_day: int = 200  # one IP hash on one link (carrier NAT puts many people on one IP)
    burst_factor: float = 10.0  # an hour's clicks on a link above this many times its usual hourly rate
    burst_min_clicks: int = 60  # ... and at least this many
    lead_ratio_factor: float = 5.0  # a partner's leads per unique click above this many times the norm
    lead_ratio_min_leads: int = 5
    duplicate_phone_days: int = 30  # the same phone through another partner within this many days
    headless_agents: str = "headlesschrome,phantomjs,python-requests,python-urllib,curl/,wget/,go-http-client,okhttp,java/,scrapy,selenium,puppeteer,playwright"
    scan_window_hours: int = 24


@dataclass(frozen=True)
class Found:
    kind: str
    rule: str
    detail: str
    where: Any  # the condition that selects the flagged clicks or leads
    link_id: int | None = None
    partner_id: int | None = None


def _fresh_clicks(since: datetime) -> list[Any]:
    return [Click.at >= since, Click.is_bot.is_(False), Click.flag_id.is_(None)]


async def _floods(session: AsyncSession, since: datetime, column: Any, limit: int, rule: str, who: str) -> list[Found]:
    """One visitor (or IP hash) clicking one link `limit` times or more within the window."""
    rows = await session.execute(
        select(Click.link_id, column, func.count()).where(Click.at >= since, Click.is_bot.is_(False))
        .group_by(Click.link_id, column).having(func.count() >= limit))
    return [Found("click", rule, f"{who} {value[:8]}… clicked link #{link_id} {count} times", 
                  and_(Click.link_id == link_id, column == value), link_id)
            for link_id, value, count in rows]


def _hour(session: AsyncSession) -> Any:
    """The click's hour (UTC), as the database can group by it."""
    if session.bind.dialect.name == "postgresql":
        return func.date_trunc("hour", Click.at)
    return func.strftime("%Y-%m-%d %H:00:00", Click.at)


async def _bursts(session: AsyncSession, since: datetime, factor: float, minimum: int) -> list[Found]:
    """An hour with far more clicks on a link than its usual hourly rate over the week before."""
    hour = _hour(session)
    busy = (await session.execute(
        select(Click.link_id, hour, func.count()).where(Click.at >= since, Click.is_bot.is_(False))
        .group_by(Click.link_id, hour).having(func.count() >= minimum))).all()
    if not busy:
        return []
    links = sorted({link_id for link_id, _, _ in busy})
    week_before = since - timedelta(days=7)
    usual = dict((await session.execute(
        select(Click.link_id, func.count()).where(Click.link_id.in_(links), Click.at >= week_before,
                                                  Click.at < since, Click.is_bot.is_(False))
        .group_by(Click.link_id))).all())
    found = []
    for link_id, started, count in busy:
        started = started if isinstance(started, datetime) else datetime.fromisoformat(started)
        started = started.replace(tzinfo=timezone.utc) if started.tzinfo is None else started
        rate = usual.get(link_id, 0) / (7 * 24)  # a new link has no usual rate: any busy hour stands out
        if count > factor * max(rate, 1.0):
            found.append(Found("click", "burst", f"link #{link_id}: {count} clicks in the hour from "
                               f"{started:%Y-%m-%d %H:00} UTC, usually {rate:.1f} an hour",
                               and_(Click.link_id == link_id, Click.at >= started,
                                    Click.at < started + timedelta(hours=1)), link_id))
    return found


async def _headless(session: AsyncSession, since: datetime, agents: list[str]) -> list[Found]:
    match = or_(*(func.lower(Click.user_agent).like(f"%{agent}%") for agent in agents))
    rows = await session.execute(select(Click.link_id, func.count()).where(*_fresh_clicks(since), match)
                                 .group_by(Click.link_id))
    return [Found("click", "headless", f"link #{link_id}: {count} clicks from scripts or headless browsers",
                  and_(Click.link_id == link_id, match), link_id) for link_id, count in rows]


async def _lead_ratios(session: AsyncSession, since: datetime, factor: float, minimum: int, zone: str) -> list[Found]:
    """A partner bringing far more leads per unique click (last 30 days) than the programme as a whole."""
    month = since - timedelta(days=30)
    leads = dict((await session.execute(
        select(Lead.partner_id, func.count()).where(Lead.created_at >= month, Lead.partner_id.is_not(None),
                                                    Lead.held.is_(False)).group_by(Lead.partner_id))).all())
    clicks = dict((await session.execute(
        select(Member.partner_id, func.sum(ClickDaily.unique_clicks)).join(TrackedLink, TrackedLink.id == ClickDaily.link_id)
        .join(Member, Member.id == TrackedLink.member_id).where(ClickDaily.day >= month.astimezone(ZoneInfo(zone)).date())
        .group_by(Member.partner_id))).all())
    total_clicks = sum(int(c or 0) for c in clicks.values())
    if not total_clicks:
        return []
    norm = sum(leads.values()) / total_clicks
    found = []
    for partner_id, count in leads.items():
        ratio = count / max(int(clicks.get(partner_id) or 0), 1)
        if count >= minimum and ratio > factor * norm:
            found.append(Found("lead", "lead_ratio", f"partner #{partner_id}: {count} leads from "
                               f"{int(clicks.get(partner_id) or 0)} unique clicks in 30 days ({ratio:.2f} a click; "
                               f"all partners {norm:.2f})",
                               and_(Lead.partner_id == partner_id, Lead.created_at >= since), partner_id=partner_id))
    return found


async def _duplicate_phones(session: AsyncSession, since: datetime, days: int) -> list[Found]:
    """A new lead whose phone another partner brought in during the `days` before it."""
    earlier = Lead.__table__.alias("earlier")
    pairs = await session.execute(
        select(Lead.id, Lead.partner_id, Lead.created_at, earlier.c.created_at).join(earlier, and_(
            earlier.c.phone == Lead.phone, earlier.c.id != Lead.id, earlier.c.partner_id.is_not(None),
            earlier.c.partner_id != Lead.partner_id, earlier.c.created_at <= Lead.created_at,
            earlier.c.created_at >= since - timedelta(days=days)))
        .where(Lead.created_at >= since, Lead.partner_id.is_not(None), Lead.flag_id.is_(None)))
    found: dict[int, Found] = {}
    for lead_id, partner_id, at, other_at in pairs:
        if at - timedelta(days=days) <= other_at and lead_id not in found:
            found[lead_id] = Found("lead", "duplicate_phone", f"lead #{lead_id}: this phone came through another "
                                   f"partner within {days} days", Lead.id == lead_id, partner_id=partner_id)
    return list(found.values())


async def _invalid_phones(session: AsyncSession, since: datetime) -> list[Found]:
    from store.leads import normalize_phone

    rows = await session.execute(select(Lead.id, Lead.phone, Lead.partner_id)
                                 .where(Lead.created_at >= since, Lead.flag_id.is_(None)))
    return [Found("lead", "invalid_phone", f"lead #{lead_id}: {phone[:3]}… is not a valid mobile number",
                  Lead.id == lead_id, partner_id=partner_id)
            # Stored phones are canonical; one that is not (written around the intake) is suspect too.
            for lead_id, phone, partner_id in rows if normalize_phone(phone) != phone]


async def scan(session: AsyncSession, f: FraudSettings, timezone: str, now: datetime | None = None) -> list[Flag]:
    """Run every rule over the window; flag (and hold) what they find that is not flagged yet.
    Daily click figures (and the norm of leads per click) are by days in `timezone`."""
    since = (now or utcnow()) - timedelta(hours=f.scan_window_hours)
    found = [
        *await _floods(session, since, Click.visitor_id, f.visitor_clicks_per_day, "visitor_flood", "visitor"),
        *await _floods(session, since, Click.ip_hash, f.ip_clicks_per_day, "ip_flood", "IP hash"),
        *await _bursts(session, since, f.burst_factor, f.burst_min_clicks),
        *await _headless(session, since, [a.strip().lower() for a in f.headless_agents.split(",") if a.strip()]),
        *await _lead_ratios(session, since, f.lead_ratio_factor, f.lead_ratio_min_leads, timezone),
        *await _duplicate_phones(session, since, f.duplicate_phone_days),
        *await _invalid_phones(session, since),
    ]
    flags = []
    for item in found:
        flag = Flag(kind=item.kind, rule=item.rule, detail=item.detail[:500], link_id=item.link_id,
                    partner_id=item.partner_id, count=0, status="open", created_at=utcnow())
        session.add(flag)
        await session.flush()
        if item.kind == "click":
            held = (await session.execute(
                update(Click).where(item.where, *_fresh_clicks(since)).values(flag_id=flag.id, held=True)
                .returning(Click.link_id, Click.at, Click.is_bot, Click.is_unique))).all()
            await bump_daily(session, held, timezone, hold=True)
        else:
            held = (await session.execute(
                update(Lead).where(item.where, Lead.flag_id.is_(None)).values(flag_id=flag.id, held=True)
                .returning(Lead.id))).all()
        if not held:  # another rule took them all first
            await session.delete(flag)
            continue
        flag.count = len(held)
        flags.append(flag)
    await session.flush()
    return flags


async def open_flags(session: AsyncSession, limit: int = 10) -> list[Flag]:
    return list(await session.scalars(select(Flag).where(Flag.status == "open").order_by(Flag.id).limit(limit)))


async def decide(session: AsyncSession, flag_id: int, decision: str, member: Member, zone: str) -> Flag:
    """cleared: the items count again; rejected: they stay out for good. Only an open flag."""
    flag = await session.get(Flag, flag_id, with_for_update=session.bind.dialect.name == "postgresql")
    if flag is None:
        raise Refusal(f"there is no flag #{flag_id}", f"没有风控记录 #{flag_id}")
    if flag.status != "open":
        raise Refusal(f"flag #{flag_id} was already {flag.status}", f"风控记录 #{flag_id} 已处理（{flag.status}）")
    if decision == "cleared":
        if flag.kind == "click":
            released = (await session.execute(
                update(Click).where(Click.flag_id == flag.id, Click.held.is_(True)).values(held=False)
                .returning(Click.link_id, Click.at, Click.is_bot, Click.is_unique))).all()
            await bump_daily(session, released, zone, hold=False)
        else:
            await session.execute(update(Lead).where(Lead.flag_id == flag.id).values(held=False))
    flag.status = decision
    session.add(FlagDecision(flag_id=flag.id, decision=decision, member_id=member.id, at=utcnow()))
    await session.flush()
    return flag
