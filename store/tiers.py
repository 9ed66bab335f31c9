"""Partner tiers (registered / silver / gold) recalculated from what partners brought in over the
last `window_days`: unique human clicks, leads and won revenue (DESIGN §1, §4). A tier needs
every one of its thresholds that is not 0; every change is kept in `tier_changes`."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store import stats
from store.models import Partner, TierChange, utcnow
from store.pool_rules import TIERS


@dataclass
class TierSettings:
    """What each tier takes (`[tiers]` in config): figures over the last `window_days`; a tier
    needs every threshold of it that is not 0."""

    window_days: int = 90
    silver_unique_clicks: int = 200
    silver_leads: int = 10
    silver_revenue: float = 0.0
    gold_unique_clicks: int = 1000
    gold_leads: int = 50
    gold_revenue: float = 100000.0


@dataclass(frozen=True)
class Threshold:
    unique_clicks: int
    leads: int
    revenue: Decimal

    def met_by(self, standing: stats.Standing) -> bool:
        return all(need == 0 or have >= need for have, need in (
            (standing.unique_clicks, self.unique_clicks), (standing.leads, self.leads), (standing.revenue, self.revenue)))


def thresholds(t: TierSettings) -> dict[str, Threshold]:
    return {"silver": Threshold(t.silver_unique_clicks, t.silver_leads, Decimal(str(t.silver_revenue))),
            "gold": Threshold(t.gold_unique_clicks, t.gold_leads, Decimal(str(t.gold_revenue)))}


def tier_for(standing: stats.Standing, rules: dict[str, Threshold]) -> str:
    for tier in reversed(TIERS[1:]):  # the highest tier whose thresholds are all met
        if rules[tier].met_by(standing):
            return tier
    return "registered"


@dataclass(frozen=True)
class Change:
    partner: Partner
    old: str
    new: str
    standing: stats.Standing


async def recalculate(session: AsyncSession, settings: TierSettings, timezone: str, today: date) -> list[Change]:
    """Every partner's tier from the window ending yesterday (days end in `timezone`); returns (and
    records) the changes."""
    last = today - timedelta(days=1)
    period = stats.Period(last - timedelta(days=settings.window_days - 1), last, timezone, "")
    standings = {s.key: s for s in await stats.partner_standings(session, await stats.member_standings(session, period))}
    rules, changes, now = thresholds(settings), [], utcnow()
    for partner in await session.scalars(select(Partner).order_by(Partner.id)):
        standing = standings.get(partner.id) or stats.Standing(partner.id, partner.name)
        new = tier_for(standing, rules)
        if new == partner.tier:
            continue
        reason = (f"{settings.window_days} days to {last}: {standing.unique_clicks} unique clicks, "
                  f"{standing.leads} leads, revenue {standing.revenue}")
        session.add(TierChange(partner_id=partner.id, old_tier=partner.tier, new_tier=new, reason=reason, at=now))
        changes.append(Change(partner, partner.tier, new, standing))
        partner.tier = new
    await session.flush()
    return changes
