"""The lead pool's rules (DESIGN §5), enforced in the database so they hold across instances.

A member's claims are serialised by writing their own member row first (a row lock on PostgreSQL,
the write lock on SQLite); the claim itself is a conditional UPDATE (store/ownership.py, which
writes every change of hands), so of two members claiming one lead at once exactly one wins. On
PostgreSQL the lock, the UPDATE and its audit event are one statement (store/ownership.py's `take`).

`protect_days`: a lead from a partner's own link is its sharer's until `protected_until`. That is
part of the same conditional UPDATEs (claim and recycle), so it holds under races too. The sharer
gives it up by returning the lead; an admin's move overrides it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.claimable import (OPEN, claim_condition, claim_pools, claim_values, claimable_by, one_of, open_to,
                             tier_of, unprotected)
from store.errors import Refusal
from store.models import Lead, LeadEvent, Member, Partner, PoolSettings, utcnow
from store.ownership import Claimed, hand_over, take
from store.pool_rules import TIER_NAMES, PoolRules, RuleBook, at_least  # noqa: F401 (the pool API)
from store.pool_rules import EDITABLE, rule_book, set_overrides
from store.text import clean_text

WORKING = ("claimed", "following")  # what goes idle; a nurturing lead waits for its date instead
CLOSED_ZH = {"won": "成交", "lost": "丢单"}
REASON_MAX = 500


async def visible_pool(session: AsyncSession, member: Member, book: RuleBook, words: list[str],
                       limit: int = 10) -> list[Lead]:
    """Leads this member may claim now: their pools, past the embargo, not in their cooldown."""
    now = utcnow()
    query = select(Lead).where(claimable_by(member, book, now))
    for word in words:
        pattern = f"%{word.replace('%', '').replace('_', '')}%"
        query = query.where(or_(Lead.region.like(pattern), Lead.industry.like(pattern), Lead.company.like(pattern)))
    return list(await session.scalars(query.order_by(Lead.created_at.desc()).limit(limit)))


@dataclass(frozen=True)
class PoolView:
    """One pool as admins see it: the rules in force, and which of them an admin set (the rest are
    the config's [pool])."""

    name: str
    partner_id: int | None
    rules: PoolRules
    overrides: dict[str, Any]


def _view(name: str, partner_id: int | None, book: RuleBook, settings: PoolSettings | None) -> PoolView:
    overrides = {} if settings is None else {key: getattr(settings, key) for key in EDITABLE
                                             if getattr(settings, key) is not None}
    return PoolView(name, partner_id, book.of(partner_id), overrides)


async def pools_overview(session: AsyncSession, default: PoolRules) -> list[PoolView]:
    """The public pool, then every partner's pool by name (`default`: the [pool] config's rules)."""
    book = await rule_book(session, default)
    settings = {s.partner_id: s for s in await session.scalars(select(PoolSettings))}
    partners = (await session.execute(select(Partner.id, Partner.name).order_by(Partner.name))).all()
    return [_view("public", None, book, settings.get(None))] + [
        _view(name, partner_id, book, settings.get(partner_id)) for partner_id, name in partners]


async def change_rules(session: AsyncSession, default: PoolRules, name: str, partner_id: int | None,
                       changes: dict[str, Any]) -> PoolView:
    """Set some of one pool's rules (None: back to the config's); BadRules names a bad one."""
    settings = await set_overrides(session, partner_id, changes)
    return _view(name, partner_id, await rule_book(session, default), settings)


def local_time(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _start_of_day(now: datetime, zone: str) -> datetime:
    local = now.astimezone(ZoneInfo(zone))
    return datetime.combine(local.date(), time(0), tzinfo=ZoneInfo(zone))


@lru_cache(maxsize=1)
def _lead_and_limits():  # type: ignore[no-untyped-def]
    """A lead as it is now (None if there is none), and how many open leads a member holds and claimed
    since a day's start: one statement, to explain a refusal."""
    member, held_leads = bindparam("limits_member"), Lead.__table__.alias("held")  # (not correlated to the lead)
    return (select(Lead,
                   select(func.count()).select_from(held_leads).where(
                       held_leads.c.owner_id == member, one_of(held_leads.c.status, OPEN)).scalar_subquery(),
                   select(func.count()).select_from(LeadEvent).where(
                       LeadEvent.member_id == member, LeadEvent.kind == "claimed",
                       LeadEvent.at >= bindparam("limits_day_start")).scalar_subquery())
            .select_from(select(literal(1).label("one")).subquery("one"))
            .outerjoin(Lead, Lead.id == bindparam("limits_lead"))
            .execution_options(populate_existing=True))


async def claim(session: AsyncSession, member: Member, lead_id: int, book: RuleBook) -> Claimed:
    now = utcnow()
    # One statement with every rule of both of the member's pools in it (each round trip costs more
    # than the SQL on a busy machine). `take` serialises the member's own claims, so two at once cannot
    # both slip under a limit; only a refusal reads more, to say why (after that lock, so consistently).
    day_start = _start_of_day(now, book.default.timezone)  # (not a pool's rule: always the server's zone)
    pools = claim_pools(member, book)
    lead = None if not pools else await take(session, lead_id, member.id, now=now,
                                             condition=claim_condition("public" in pools, "own" in pools),
                                             params=claim_values(pools, member, book, now, day_start))
    if lead is None:
        raise await _why_not_taken(session, member, lead_id, book, now, day_start)
    return lead


async def _why_not_taken(session: AsyncSession, member: Member, lead_id: int, book: RuleBook, now: datetime,
                         day_start: datetime) -> Refusal:
    """Why a claim took nothing, checked in the order members are told: the pool, its tier, the limits, the lead."""
    lead, held, today = (await session.execute(
        _lead_and_limits(), {"limits_lead": lead_id, "limits_member": member.id, "limits_day_start": day_start})).one()
    pool_of_lead = None if lead is None else lead.pool_partner_id
    rules = book.of(pool_of_lead)
    if pool_of_lead not in (None, member.partner_id):
        return await _why_not_claimable(session, member, lead, lead_id, rules, now)
    if not at_least(tier_of(member), rules.min_tier):
        return Refusal(f"leads in this pool are for {rules.min_tier} partners and above",
                       f"该线索池仅限{TIER_NAMES.get(rules.min_tier, rules.min_tier)}及以上伙伴领取")
    if held >= rules.max_held:
        return Refusal(f"you already hold {held} open leads, the most allowed ({rules.max_held}); "
                       "win, lose or return one first",
                       f"您已持有 {held} 条未结束线索，已达上限 {rules.max_held}；请先成交、丢单或退回")
    if today >= rules.daily_claim_limit:
        return Refusal(f"you have claimed {today} leads today, the daily limit; try again tomorrow",
                       f"您今天已领取 {today} 条线索，达到每日上限，请明天再来")
    return await _why_not_claimable(session, member, lead, lead_id, rules, now)


async def _why_not_claimable(session: AsyncSession, member: Member, lead: Lead | None, lead_id: int,
                             rules: PoolRules, now: datetime) -> Refusal:
    if lead is None or (lead.pool_partner_id not in (None, member.partner_id) and lead.owner_id != member.id):
        return Refusal(f"there is no lead #{lead_id} in your pools", f"您的线索池里没有线索 #{lead_id}")
    if lead.owner_id == member.id:
        return Refusal(f"lead #{lead_id} is already yours", f"线索 #{lead_id} 已经是您的")
    if lead.owner_id is not None or lead.status != "new":
        return Refusal(f"lead #{lead_id} is held by someone else", f"线索 #{lead_id} 已被他人领取")
    if lead.protected_until is not None and not await session.scalar(
            select(exists().where(Lead.id == lead_id, open_to(member, now)))):
        until = local_time(lead.protected_until, rules.timezone)
        return Refusal(f"lead #{lead_id} is protected for its sharer until {until}; only they may follow it up",
                       f"线索 #{lead_id} 受保护至 {until}，仅原分享人可跟进")
    opens = lead.created_at + timedelta(hours=rules.embargo_hours)
    if opens > now:
        when = local_time(opens, rules.timezone)
        return Refusal(f"lead #{lead_id} can be claimed from {when}", f"线索 #{lead_id} 自 {when} 起可领取")
    last = await session.scalar(select(func.max(LeadEvent.at)).where(
        LeadEvent.lead_id == lead_id, LeadEvent.member_id == member.id, LeadEvent.kind.in_(("returned", "recycled"))))
    if last is not None:
        until = (last + timedelta(days=rules.cooldown_days)).astimezone(ZoneInfo(rules.timezone)).strftime("%Y-%m-%d")
        return Refusal(f"you gave lead #{lead_id} back recently; you may claim it again after {until}",
                       f"您近期退回过线索 #{lead_id}，{until} 之后才能再次领取")
    return Refusal(f"lead #{lead_id} cannot be claimed now", f"线索 #{lead_id} 暂时不能领取")


async def _held(session: AsyncSession, member: Member, lead_id: int) -> Lead:
    lead = await session.get(Lead, lead_id, with_for_update=session.bind.dialect.name == "postgresql")
    if lead is None or lead.owner_id != member.id:
        raise Refusal(f"lead #{lead_id} is not one of yours; send leads to see them",
                      f"线索 #{lead_id} 不是您的；发送“我的线索”查看")
    if lead.status not in OPEN:
        raise Refusal(f"lead #{lead_id} is already {lead.status}", f"线索 #{lead_id} 已{CLOSED_ZH.get(lead.status, '结束')}")
    return lead


def check_text(text: str, what_en: str, what_zh: str, required: bool = True) -> str:
    text = clean_text(text)
    if required and not text:
        raise Refusal(f"give a {what_en}", f"请写明{what_zh}")
    if len(text) > REASON_MAX:
        raise Refusal(f"the {what_en} is {len(text)} characters; at most {REASON_MAX}",
                      f"{what_zh}有 {len(text)} 个字，最多 {REASON_MAX} 个")
    return text


async def give_back(session: AsyncSession, member: Member, lead_id: int, reason: str,
                    book: RuleBook) -> tuple[Lead, datetime | None]:
    """Give a held lead back to its pool. A return gives up the protection the lead had for its
    sharer, so colleagues may take it at once; returned with the lead is until when that
    protection would have run (None if none was running)."""
    lead = await _held(session, member, lead_id)
    rules = book.of(home_pool(lead))
    reason = check_text(reason, "reason", "退回原因", required=rules.return_reason_required)
    now = utcnow()
    given_up = lead.protected_until if lead.protected_until is not None and lead.protected_until > now else None
    returned = await hand_over(session, lead.id, None, kind="returned", member_id=member.id, note=reason, now=now,
                               only_if=[Lead.owner_id == member.id, Lead.status.in_(OPEN)],
                               protected_until=None, pool_partner_id=home_pool(lead))
    if returned is None:  # only without a row lock (SQLite): it changed hands since it was read
        raise Refusal(f"lead #{lead_id} is not one of yours; send leads to see them",
                      f"线索 #{lead_id} 不是您的；发送“我的线索”查看")
    return returned, given_up


async def follow_up(session: AsyncSession, member: Member, lead_id: int, note: str) -> Lead:
    note = check_text(note, "note of what happened", "跟进内容")
    lead = await _held(session, member, lead_id)
    now = utcnow()
    lead.status, lead.last_follow_at, lead.next_contact_at, lead.updated_at = "following", now, None, now
    session.add(LeadEvent(lead_id=lead.id, kind="followed", member_id=member.id, note=note, at=now))
    await session.flush()
    return lead


MAX_AMOUNT = Decimal("10000000000")


def parse_amount(text: str) -> Decimal:
    raw = text.strip().replace(",", "").replace("，", "").replace("元", "").replace("¥", "").replace("￥", "")
    factor = Decimal(10000) if raw.endswith("万") else Decimal(1)
    raw = raw.removesuffix("万")
    try:
        amount = (Decimal(raw) * factor).quantize(Decimal("0.01"))
    except Exception:
        raise Refusal(f"“{text[:20]}” is not an amount like 12000 or 1.2万", f"“{text[:20]}”不是金额，例如 12000 或 1.2万") from None
    if not amount.is_finite() or amount <= 0 or amount >= MAX_AMOUNT:
        raise Refusal("the amount must be more than 0 and less than 10,000,000,000",
                      "金额必须大于 0 且小于 100 亿")
    return amount


async def win(session: AsyncSession, member: Member, lead_id: int, amount: Decimal) -> Lead:
    lead = await _held(session, member, lead_id)
    now = utcnow()
    lead.status, lead.won_amount, lead.won_at, lead.updated_at = "won", amount, now, now
    session.add(LeadEvent(lead_id=lead.id, kind="won", member_id=member.id, note=str(amount), at=now))
    await session.flush()
    return lead


async def lose(session: AsyncSession, member: Member, lead_id: int, reason: str) -> Lead:
    reason = check_text(reason, "reason", "丢单原因")
    lead = await _held(session, member, lead_id)
    now = utcnow()
    lead.status, lead.updated_at = "lost", now
    session.add(LeadEvent(lead_id=lead.id, kind="lost", member_id=member.id, note=reason, at=now))
    await session.flush()
    return lead


async def held_by(session: AsyncSession, member: Member) -> list[Lead]:
    return list(await session.scalars(select(Lead).where(Lead.owner_id == member.id, Lead.status.in_(OPEN))
                                      .order_by(Lead.claimed_at)))


async def history(session: AsyncSession, lead_id: int) -> list[LeadEvent]:
    return list(await session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead_id).order_by(LeadEvent.id)))


def _last_activity():  # type: ignore[no-untyped-def]
    return func.coalesce(Lead.last_follow_at, Lead.claimed_at, Lead.created_at)


def last_activity(lead: Lead) -> datetime:
    return lead.last_follow_at or lead.claimed_at or lead.created_at


def home_pool(lead: Lead) -> int | None:
    """The pool a held lead goes back to: where it came from, or a partner's own lead to that partner."""
    return lead.pool_partner_id or lead.partner_id


async def idle_leads(session: AsyncSession, idle_before: datetime, protected_before: datetime,
                     limit: int = 500) -> list[Lead]:
    """Held leads quiet since `idle_before`, leaving out those protected beyond `protected_before`
    (long-protected leads would otherwise fill the batch and starve the ones due now)."""
    return list(await session.scalars(select(Lead).where(
        Lead.status.in_(WORKING), Lead.owner_id.is_not(None), _last_activity() <= idle_before,
        unprotected(protected_before))
        .order_by(_last_activity()).limit(limit)))


def recycle_due(lead: Lead, rules: PoolRules) -> datetime:
    """When a quiet lead goes back to its pool: `idle_days` after its last activity, but never
    while it is protected for its sharer (the sharer keeps it, and is warned the day before)."""
    due = last_activity(lead) + timedelta(days=rules.idle_days)
    return max(due, lead.protected_until) if lead.protected_until is not None else due


async def recycle(session: AsyncSession, lead: Lead, idle_before: datetime) -> bool:
    """Put an idle lead back in its pool; False if it moved meanwhile (followed up, or another
    instance recycled it first) or is protected for its sharer."""
    now = utcnow()
    recycled = await hand_over(
        session, lead.id, None, kind="recycled", member_id=lead.owner_id, note="no follow-up", now=now,
        only_if=[Lead.owner_id == lead.owner_id, Lead.status.in_(WORKING), _last_activity() <= idle_before,
                 unprotected(now)],
        protected_until=None, pool_partner_id=func.coalesce(Lead.pool_partner_id, Lead.partner_id))
    return recycled is not None


async def move(session: AsyncSession, lead: Lead, *, partner_id: int | None = None, member: Member | None = None,
               by: str = "admin") -> None:
    """Move a lead between levels: to the public pool, a partner's pool, or straight to a member.
    An admin's move overrides `protect_days`: the protection ends (noted in the audit trail)."""
    now = utcnow()
    lifted = " (protection lifted)" if lead.protected_until is not None and lead.protected_until > now else ""
    if member is not None:
        await hand_over(session, lead.id, member, kind="assigned", member_id=member.id, note=f"by {by}{lifted}",
                        now=now, protected_until=None, pool_partner_id=member.partner_id)
    else:
        where = f"partner pool {partner_id}" if partner_id else "public pool"
        await hand_over(session, lead.id, None, kind="assigned", member_id=None, note=f"to {where} by {by}{lifted}",
                        now=now, released=None if lead.owner_id is None else (lead.owner_id, f"moved by {by}"),
                        protected_until=None, pool_partner_id=partner_id)


async def nurture(session: AsyncSession, member: Member, lead_id: int, until: datetime, note: str) -> Lead:
    """Not ready to buy: keep it, stop the idle clock, and remind the holder on `until`."""
    note = check_text(note, "note", "备注", required=False)
    if until <= utcnow():
        raise Refusal("the next-contact date must be in the future", "下次联系日期必须在未来")
    lead = await _held(session, member, lead_id)
    now = utcnow()
    lead.status, lead.next_contact_at, lead.last_follow_at, lead.updated_at = "nurturing", until, now, now
    session.add(LeadEvent(lead_id=lead.id, kind="nurturing", member_id=member.id,
                          note=f"next contact {until.date().isoformat()}" + (f": {note}" if note else ""), at=now))
    await session.flush()
    return lead


def nurture_key(lead_id: int, next_contact_at: datetime) -> str:
    """The message key of the holder's prompt for a nurturing lead's next-contact date: one prompt
    per lead and date."""
    return f"nurture:{lead_id}:{next_contact_at.isoformat()}"


def nurtured_lead_id(key: str | None) -> int | None:
    """The lead a nurture_key names (None for any other key)."""
    parts = (key or "").split(":")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "nurture" and parts[1].isdigit() else None


async def due_for_contact(session: AsyncSession, now: datetime, limit: int = 500) -> list[Lead]:
    return list(await session.scalars(select(Lead).where(
        Lead.status == "nurturing", Lead.owner_id.is_not(None), Lead.next_contact_at <= now).limit(limit)))
