"""Automatic assignment of new pool leads by rules stored in the database (admin API).

A rule names a partner, or (without one) picks by capability: the partners whose industries
include the lead's and whose tier is at least the rule's `min_tier`, higher tiers first. Within
the chosen partners, the member assigned a lead longest ago (with room under `max_held`) gets it.
"""
from __future__ import annotations

from itertools import groupby

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AssignmentRule, Lead, LeadEvent, Member, Partner
from store.ownership import hand_over
from store.pool import OPEN
from store.pool_rules import TIERS, RuleBook, at_least


async def matching_rules(session: AsyncSession, lead: Lead) -> list[AssignmentRule]:
    return list(await session.scalars(
        select(AssignmentRule).where(
            AssignmentRule.active.is_(True),
            or_(AssignmentRule.region == "", AssignmentRule.region == lead.region),
            or_(AssignmentRule.industry == "", AssignmentRule.industry == lead.industry))
        .order_by(AssignmentRule.priority, AssignmentRule.id)))


async def capable_partners(session: AsyncSession, lead: Lead, min_tier: str) -> list[list[int]]:
    """Partners able to take the lead, grouped by tier, highest tier first."""
    able = [p for p in await session.scalars(select(Partner))
            if at_least(p.tier, min_tier) and (not lead.industry or lead.industry in (p.industries or []))]
    able.sort(key=lambda p: -TIERS.index(p.tier) if p.tier in TIERS else 0)
    return [[p.id for p in group] for _, group in groupby(able, key=lambda p: p.tier)]


async def next_member(session: AsyncSession, partner_ids: list[int], max_held: int) -> Member | None:
    """Round robin: the partners' active member with room who was assigned a lead longest ago."""
    held = (select(func.count()).select_from(Lead)
            .where(Lead.owner_id == Member.id, Lead.status.in_(OPEN)).scalar_subquery())
    last_assigned = (select(func.max(LeadEvent.at)).where(LeadEvent.member_id == Member.id,
                                                           LeadEvent.kind == "assigned").scalar_subquery())
    query = (select(Member).where(Member.partner_id.in_(partner_ids), Member.role == "partner",
                                  Member.active.is_(True), held < max_held)
             .order_by(last_assigned.is_not(None), last_assigned, Member.id).limit(1))
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # two leads at once go to two members
    return await session.scalar(query)


async def auto_assign(session: AsyncSession, lead: Lead, book: RuleBook) -> Member | None:
    """Give an unowned new lead to a member by the matching rules in priority order (the next rule
    when nobody under one has room), within the `max_held` of the lead's pool; None leaves it."""
    if lead.owner_id is not None or lead.status != "new":
        return None
    max_held = book.of(lead.pool_partner_id).max_held
    for rule in await matching_rules(session, lead):
        groups = [[rule.partner_id]] if rule.partner_id else await capable_partners(session, lead, rule.min_tier)
        for partner_ids in groups:
            member = await next_member(session, partner_ids, max_held)
            if member is None:
                continue
            taken = await hand_over(session, lead.id, member, kind="assigned", member_id=member.id,
                                    note=f"rule #{rule.id}", only_if=[Lead.owner_id.is_(None), Lead.status == "new"])
            return member if taken is not None else None
    return None


async def active_rules(session: AsyncSession) -> list[AssignmentRule]:
    return list(await session.scalars(select(AssignmentRule).where(AssignmentRule.active.is_(True))
                                      .order_by(AssignmentRule.priority, AssignmentRule.id)))


async def get_rule(session: AsyncSession, rule_id: int) -> AssignmentRule | None:
    return await session.get(AssignmentRule, rule_id)


async def add_rule(session: AsyncSession, *, priority: int, region: str, industry: str, partner_id: int | None,
                   min_tier: str) -> AssignmentRule:
    rule = AssignmentRule(priority=priority, region=region, industry=industry, partner_id=partner_id,
                          min_tier=min_tier, active=True)
    session.add(rule)
    await session.flush()
    return rule


async def retire_rule(session: AsyncSession, rule: AssignmentRule) -> None:
    """Rules are kept (leads' audit trails name them), only no longer applied."""
    rule.active = False
    await session.flush()
