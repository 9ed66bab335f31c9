"""Incentive points and commission (DESIGN §1): an append-only ledger reconciled with the events.

`worth()` says what each basis (a share, a member's unique clicks on a closed day, a lead, a won
deal) is worth now; `accrue()` appends, for every basis whose ledger entries do not add up to that,
one entry with the difference. So the ledger always converges to a recomputation from the events:
a new event earns, and a flagged click or a reversed win becomes a negative entry — never an edit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import dialect_insert
from store.models import ClickDaily, Lead, Member, Partner, PointsEntry, Share, TrackedLink, utcnow

CENT = Decimal("0.01")


@dataclass
class PointsSettings:
    """What the incentives are worth (`[points]` in config)."""

    # Points per share (once per task and member), unique human click, lead and won deal.
    share: int = 1
    unique_click: int = 1
    lead: int = 10
    won_deal: int = 50
    # Commission on won revenue by the partner's tier (a partner's own rate, set by admins, wins).
    commission_registered: float = 0.0
    commission_silver: float = 0.02
    commission_gold: float = 0.05
    # Events this recent are (re)checked by the accrual run; older ones are settled.
    settle_days: int = 35


@dataclass(frozen=True)
class Worth:
    kind: str
    member_id: int
    partner_id: int | None
    points: int
    commission: Decimal = Decimal(0)


def commission_rate(partner: Partner | None, settings: PointsSettings) -> Decimal:
    if partner is None:
        return Decimal(0)
    if partner.commission_rate is not None:
        return Decimal(partner.commission_rate)
    return Decimal(str(getattr(settings, f"commission_{partner.tier}", 0.0)))


async def worth(session: AsyncSession, p: PointsSettings, timezone: str, now: datetime) -> dict[str, Worth]:
    """What every basis from the last `settle_days` is worth now (0 for one that no longer counts,
    such as a rejected lead: its earlier entries are then reversed). Days end in `timezone`."""
    zone = ZoneInfo(timezone)
    since = now - timedelta(days=p.settle_days)
    today = now.astimezone(zone).date()
    members = {m.id: m for m in await session.scalars(select(Member))}
    partners = {x.id: x for x in await session.scalars(select(Partner))}
    found: dict[str, Worth] = {}

    def partner_of(member_id: int) -> int | None:
        member = members.get(member_id)
        return member.partner_id if member else None

    for task_id, member_id in await session.execute(
            # Content copies earn no share points yet (their incentive is still to be decided).
            select(Share.task_id, Share.member_id).where(Share.task_id.is_not(None))
            .group_by(Share.task_id, Share.member_id)
            .having(func.min(Share.created_at) >= since)):
        found[f"share:{task_id}:{member_id}"] = Worth("share", member_id, partner_of(member_id), p.share)
    # A day's clicks count once the day is over (late clicks and flags then settle with it).
    for member_id, day, clicks in await session.execute(
            select(TrackedLink.member_id, ClickDaily.day, func.sum(ClickDaily.unique_clicks))
            .join(TrackedLink, TrackedLink.id == ClickDaily.link_id)
            .where(ClickDaily.day >= since.astimezone(zone).date(), ClickDaily.day < today)
            .group_by(TrackedLink.member_id, ClickDaily.day)):
        found[f"clicks:{member_id}:{day.isoformat()}"] = Worth("click", member_id, partner_of(member_id),
                                                               int(clicks or 0) * p.unique_click)
    for lead_id, member_id, valid in await session.execute(
            select(Lead.id, TrackedLink.member_id, counts_for_incentives())
            .join(TrackedLink, TrackedLink.id == Lead.link_id).where(Lead.created_at >= since)):
        found[f"lead:{lead_id}"] = Worth("lead", member_id, partner_of(member_id), p.lead if valid else 0)
    for lead_id, owner_id, amount, valid in await session.execute(
            select(Lead.id, Lead.owner_id, Lead.won_amount, counts_for_incentives())
            .where(Lead.status == "won", Lead.won_at >= since, Lead.owner_id.is_not(None))):
        partner_id = partner_of(owner_id)
        commission = (Decimal(amount or 0) * commission_rate(partners.get(partner_id), p)).quantize(CENT)
        found[f"won:{lead_id}"] = Worth("won", owner_id, partner_id, p.won_deal if valid else 0,
                                        commission if valid else Decimal(0))
    return found


def counts_for_incentives():  # type: ignore[no-untyped-def]
    """Whether a lead earns anything: not while a fraud flag holds it."""
    return Lead.held.is_(False)


async def accrue(session: AsyncSession, settings: PointsSettings, timezone: str, now: datetime | None = None) -> int:
    """Append the entries that make each recent basis add up to its worth; returns how many."""
    now = now or utcnow()
    since = now - timedelta(days=settings.settle_days)
    target = await worth(session, settings, timezone, now)
    booked: dict[str, tuple[int, Decimal, int]] = {}
    # Entries come after their event, so a basis in the window has all its entries in it too.
    for basis, points, commission, entries, member_id, partner_id in await session.execute(
            select(PointsEntry.basis, func.sum(PointsEntry.points), func.sum(PointsEntry.commission), func.count(),
                   func.min(PointsEntry.member_id), func.min(PointsEntry.partner_id))
            .where(PointsEntry.at >= since).group_by(PointsEntry.basis)):
        booked[basis] = (int(points), Decimal(commission or 0), entries)
        if basis.startswith("won:") and basis not in target and (points or commission):
            # Booked as won but no longer won (a correction): worth nothing now.
            status = await session.scalar(select(Lead.status).where(Lead.id == int(basis[4:])))
            if status != "won":
                target[basis] = Worth("won", member_id, partner_id, 0)
    rows = []
    for basis, want in sorted(target.items()):  # a basis no longer in the window is settled: left alone
        points, commission, entries = booked.get(basis, (0, Decimal(0), 0))
        if (want.points, want.commission) == (points, commission):
            continue
        gain = want.points >= points and want.commission >= commission
        rows.append({"ref": f"{basis}#{entries}", "basis": basis, "kind": want.kind if gain else "reversal",
                     "member_id": want.member_id, "partner_id": want.partner_id, "points": want.points - points,
                     "commission": want.commission - commission, "note": "" if entries == 0 else "adjusted", "at": now})
    if rows:
        insert = dialect_insert(session)
        for start in range(0, len(rows), 1000):
            await session.execute(insert(PointsEntry).values(rows[start:start + 1000])
                                  .on_conflict_do_nothing(index_elements=["ref"]))
    return len(rows)


@dataclass(frozen=True)
class Balance:
    points: int
    commission: Decimal


async def balance(session: AsyncSession, member_id: int, since: datetime | None = None) -> Balance:
    points, commission = (await session.execute(
        select(func.coalesce(func.sum(PointsEntry.points), 0), func.coalesce(func.sum(PointsEntry.commission), 0))
        .where(PointsEntry.member_id == member_id, *([PointsEntry.at >= since] if since else [])))).one()
    return Balance(int(points), Decimal(commission).quantize(CENT))


def month_start(day: date, zone: str) -> datetime:
    return datetime.combine(day.replace(day=1), time(0), tzinfo=ZoneInfo(zone))


async def statement_entries(session: AsyncSession, partner_id: int, first: date, after: date,
                            zone: str) -> list[tuple[PointsEntry, str, str]]:
    """A partner's ledger entries from `first` up to `after` (local days), each with the member's
    userid and name, in the order they were earned."""
    return [(entry, userid, name) for entry, userid, name in (await session.execute(
        select(PointsEntry, Member.userid, Member.name).join(Member, Member.id == PointsEntry.member_id)
        .where(PointsEntry.partner_id == partner_id, PointsEntry.at >= month_start(first, zone),
               PointsEntry.at < month_start(after, zone))
        .order_by(PointsEntry.at, PointsEntry.id))).all()]


async def totals_by_member(session: AsyncSession, start: datetime, end: datetime) -> list[tuple[int, str, int, Decimal]]:
    """(member id, userid, points, commission) earned in [start, end) by each active member who earned any."""
    return [(member_id, userid, int(earned), Decimal(commission or 0)) for member_id, userid, earned, commission in
            await session.execute(
                select(Member.id, Member.userid, func.sum(PointsEntry.points), func.sum(PointsEntry.commission))
                .join(PointsEntry, PointsEntry.member_id == Member.id)
                .where(PointsEntry.at >= start, PointsEntry.at < end, Member.active.is_(True))
                .group_by(Member.id, Member.userid))]
