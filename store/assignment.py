"""Automatic assignment of new pool leads by rules stored in the database (admin API)."""
from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AssignmentRule, Lead, LeadEvent, Member, utcnow
from store.pool import OPEN
from store.pool_rules import RuleBook


async def matching_rule(session: AsyncSession, lead: Lead) -> AssignmentRule | None:
    return await session.scalar(
        select(AssignmentRule).where(
            AssignmentRule.active.is_(True),
            or_(AssignmentRule.region == "", AssignmentRule.region == lead.region),
            or_(AssignmentRule.industry == "", AssignmentRule.industry == lead.industry))
        .order_by(AssignmentRule.priority, AssignmentRule.id).limit(1))


async def next_member(session: AsyncSession, partner_id: int, max_held: int) -> Member | None:
    """Round robin: the partner's active member with room who was assigned a lead longest ago."""
    held = (select(func.count()).select_from(Lead)
            .where(Lead.owner_id == Member.id, Lead.status.in_(OPEN)).scalar_subquery())
    last_assigned = (select(func.max(LeadEvent.at)).where(LeadEvent.member_id == Member.id,
                                                           LeadEvent.kind == "assigned").scalar_subquery())
    query = (select(Member).where(Member.partner_id == partner_id, Member.role == "partner",
                                  Member.active.is_(True), held < max_held)
             .order_by(last_assigned.is_not(None), last_assigned, Member.id).limit(1))
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # two leads at once go to two members
    return await session.scalar(query)


async def auto_assign(session: AsyncSession, lead: Lead, book: RuleBook) -> Member | None:
    """Give an unowned new lead to a member by the first matching rule, within the `max_held` of
    the lead's pool; None leaves it in the pool."""
    if lead.owner_id is not None or lead.status != "new":
        return None
    rule = await matching_rule(session, lead)
    if rule is None:
        return None
    member = await next_member(session, rule.partner_id, book.of(lead.pool_partner_id).max_held)
    if member is None:
        return None
    now = utcnow()
    lead.owner_id, lead.status, lead.claimed_at, lead.updated_at = member.id, "claimed", now, now
    session.add(LeadEvent(lead_id=lead.id, kind="assigned", member_id=member.id, note=f"rule #{rule.id}", at=now))
    await session.flush()
    return member
