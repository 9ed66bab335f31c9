"""Which leads a member may claim now, as SQL: the pool rules' conditions that visible_pool lists
by and a claim's conditional UPDATE applies (store/pool.py), so the two never disagree."""
from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, bindparam, false, func, literal_column, or_, select
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import replacement_traverse

from store.models import Lead, LeadEvent, Member, TrackedLink
from store.pool_rules import PoolRules, RuleBook, at_least

OPEN = ("claimed", "following", "nurturing")  # held by someone, not finished


def unprotected(now: datetime):  # type: ignore[no-untyped-def]
    return or_(Lead.protected_until.is_(None), Lead.protected_until <= now)


def open_to(member: Member, now: datetime):  # type: ignore[no-untyped-def]
    """Not protected for someone else: no protection running, or this member shared the lead."""
    own_links = select(TrackedLink.id).where(TrackedLink.member_id == member.id)
    return or_(unprotected(now), Lead.link_id.in_(own_links))


_L, _EV, _LINKS = Lead.__table__.c, LeadEvent.__table__.c, TrackedLink.__table__.c


def one_of(column, values: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """`column IN ('a', 'b')` written into the SQL: `in_` with a list of values binds them as an
    "expanding" parameter, which SQLAlchemy renders again on every execution (most of the CPU a
    claim's statement cost). These are the code's own constants, never a person's input."""
    return column.in_([literal_column("'%s'" % value.replace("'", "''")) for value in values])


@lru_cache(maxsize=4)
def claimable_template(public: bool, key: str = "claimable"):  # type: ignore[no-untyped-def]
    """Unowned new leads of one pool (the public one, or the pool of `{key}_pool`), past that pool's
    embargo, not in this member's cooldown, not protected for another member's share; its values are
    bind parameters named after `key` (`claimable_values`), so a claim does not build this expression
    again each time. Table columns, not ORM attributes: claims run it as a Core statement."""
    member, now = bindparam(f"{key}_member"), bindparam(f"{key}_now")
    recent_give_backs = select(_EV.lead_id).where(
        _EV.member_id == member, one_of(_EV.kind, ("returned", "recycled")), _EV.at > bindparam(f"{key}_given_back_after"))
    own_links = select(_LINKS.id).where(_LINKS.member_id == member)
    return and_(_L.pool_partner_id.is_(None) if public else _L.pool_partner_id == bindparam(f"{key}_pool"),
                _L.status == "new", _L.owner_id.is_(None), _L.created_at <= bindparam(f"{key}_created_by"),
                _L.id.not_in(recent_give_backs),
                or_(_L.protected_until.is_(None), _L.protected_until <= now, _L.link_id.in_(own_links)))


def claimable_values(pool_partner_id: int | None, member: Member, rules: PoolRules, now: datetime,
                     key: str = "claimable") -> dict[str, Any]:
    return {f"{key}_member": member.id, f"{key}_now": now, f"{key}_pool": pool_partner_id,
            f"{key}_given_back_after": now - timedelta(days=rules.cooldown_days),
            f"{key}_created_by": now - timedelta(hours=rules.embargo_hours)}


def claimable_in(pool_partner_id: int | None, member: Member, rules: PoolRules, now: datetime):  # type: ignore[no-untyped-def]
    """The leads of one pool this member may claim now (`claimable_template` with its values)."""
    values = claimable_values(pool_partner_id, member, rules, now)
    # Each parameter made anonymous with its value, so two pools' conditions can sit in one query.
    return replacement_traverse(claimable_template(pool_partner_id is None), {}, lambda e: bindparam(
        None, values[e.key], type_=e.type, unique=True) if isinstance(e, BindParameter) and e.key in values else None)


def tier_of(member: Member) -> str:
    return member.partner.tier if member.partner is not None else "registered"


def claim_pools(member: Member, book: RuleBook) -> dict[str, int | None]:
    """A member's pools, by their key in `claim_condition`: the public one and their own partner's,
    each only if their partner's tier is high enough for it (that pool's min_tier)."""
    pools = {"public": None} if member.partner_id is None else {"public": None, "own": member.partner_id}
    return {key: p for key, p in pools.items() if at_least(tier_of(member), book.of(p).min_tier)}


def claimable_by(member: Member, book: RuleBook, now: datetime):  # type: ignore[no-untyped-def]
    """What a member sees: the leads of their pools, each under its own rules."""
    return or_(false(), *(claimable_in(p, member, book.of(p), now) for p in claim_pools(member, book).values()))


@lru_cache(maxsize=4)
def claim_condition(public: bool, own: bool):  # type: ignore[no-untyped-def]
    """A lead the member `claim_member` may claim now from their pools (`public`, `own`: which of
    `claim_pools` are open to them), each pool under its own rules, with the member under that
    pool's max_held and daily_claim_limit: one condition, so a claim is one UPDATE. Run after the
    member's row lock, so two claims of one member cannot both slip under a limit. Built once per
    shape; its values are `claim_values`."""
    member = bindparam("claim_member")
    held_leads = Lead.__table__.alias("held")  # not the claimed row: a subquery of the UPDATE's own table
    held = select(func.count()).select_from(held_leads).where(
        held_leads.c.owner_id == member, one_of(held_leads.c.status, OPEN)).scalar_subquery()
    today = select(func.count()).select_from(LeadEvent.__table__).where(
        _EV.member_id == member, _EV.kind == "claimed", _EV.at >= bindparam("claim_day_start")).scalar_subquery()
    return or_(false(), *(and_(claimable_template(key == "public", key), held < bindparam(f"{key}_max_held"),
                               today < bindparam(f"{key}_daily_claim_limit"))
                          for key, on in (("public", public), ("own", own)) if on))


def claim_values(pools: dict[str, int | None], member: Member, book: RuleBook, now: datetime,
                 day_start: datetime) -> dict[str, Any]:
    """The values of `claim_condition` for this member's `pools` (`claim_pools`)."""
    values: dict[str, Any] = {"claim_member": member.id, "claim_day_start": day_start}
    for key, pool_partner_id in pools.items():
        rules = book.of(pool_partner_id)
        values |= claimable_values(pool_partner_id, member, rules, now, key)
        values |= {f"{key}_max_held": rules.max_held, f"{key}_daily_claim_limit": rules.daily_claim_limit}
    return values
