"""A lead changing hands: the one place that writes who holds a lead, its status, and the audit
event that says so (claim, assignment by rule or admin, a form's sharer, return, recycling).

The change is one conditional UPDATE: `only_if` names what must still hold when it runs, so of
two instances or members acting on one lead at once exactly one wins, on SQLite and PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Integer, bindparam, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, Executable

from store.models import Lead, LeadEvent, Member, UTCDateTime, utcnow


async def hand_over(session: AsyncSession, lead_id: int, to: Member | None, *, kind: str, member_id: int | None,
                    note: str, only_if: Sequence[Any] = (), now: datetime | None = None,
                    released: tuple[int, str] | None = None, params: dict[str, Any] | None = None,
                    **also: Any) -> Lead | None:
    """Give the lead to `to` (claimed by them) or, with None, back to a pool (new, unowned), and
    record `kind` for `member_id` (who took it, or who gave it up). `released`: the holder it is
    taken from and a note, recorded as their return (an admin's move). `also` sets further
    columns with it (the pool, the protection), or overrides the ones above; `params`: values of
    bind parameters in `only_if`. None if `only_if` no longer held: nothing was written.
    The lead comes back refreshed, so objects the caller holds show the change."""
    now = now or utcnow()
    await session.flush()  # pending changes to the lead go first, not over the UPDATE
    values = {"owner_id": to.id, "status": "claimed", "claimed_at": now} if to is not None \
        else {"owner_id": None, "status": "new", "claimed_at": None}
    # RETURNING the lead (refreshed in the session) spares a SELECT after the UPDATE.
    lead = (await session.scalars(
        update(Lead).where(Lead.id == lead_id, *only_if).values({**values, "updated_at": now, **also})
        .returning(Lead).execution_options(synchronize_session=False, populate_existing=True), params)).one_or_none()
    if lead is None:
        return None
    if released is not None:
        session.add(LeadEvent(lead_id=lead_id, kind="returned", member_id=released[0], note=released[1], at=now))
    session.add(LeadEvent(lead_id=lead_id, kind=kind, member_id=member_id, note=note, at=now))
    await session.flush()
    return lead


class Claimed(NamedTuple):
    """What the reply to a claim shows of the lead taken, read back by the claim's own statement."""

    id: int
    name: str
    company: str
    phone: str
    region: str
    industry: str


_LEADS, _EVENTS = Lead.__table__, LeadEvent.__table__


@lru_cache(maxsize=8)
def _take_statement(condition: ColumnElement[bool], postgres: bool) -> Executable:
    """The lead `take_lead` to `take_member` if `condition` still holds. Core, built once per condition:
    a claim is the busiest write in the pool, and building and loading ORM objects cost it more CPU than
    the database's work. On PostgreSQL the audit event is written by the same statement (a data-modifying
    CTE), so a claim is one round trip; SQLite has no such CTE and writes it with a second statement."""
    member, now = bindparam("take_member", type_=Integer()), bindparam("take_now", type_=UTCDateTime())
    taken = (update(_LEADS).where(_LEADS.c.id == bindparam("take_lead"), condition)
             .values(owner_id=member, status="claimed", claimed_at=now, updated_at=now)
             .returning(*(_LEADS.c[name] for name in Claimed._fields)))
    if not postgres:
        return taken
    taken_cte = taken.cte("taken")
    event = insert(_EVENTS).from_select(
        ["lead_id", "kind", "member_id", "note", "at"],
        select(taken_cte.c.id, literal("claimed"), member, literal(""), now)).cte("taken_event")
    return select(taken_cte).add_cte(event)


_EVENT = insert(_EVENTS).values(lead_id=bindparam("take_lead"), kind="claimed", member_id=bindparam("take_member"),
                                note="", at=bindparam("take_now"))


async def take(session: AsyncSession, lead_id: int, member_id: int, *, condition: ColumnElement[bool],
               params: dict[str, Any], now: datetime) -> Claimed | None:
    """Claim the lead for `member_id`: owner, status "claimed" and its "claimed" event, if `condition`
    (a statement built once, its values in `params`) holds when the UPDATE runs; None if it does
    not (nothing written). A conditional UPDATE as in hand_over: of two at once, exactly one wins."""
    if session.new or session.dirty or session.deleted:
        await session.flush()  # pending changes go first, not over the UPDATE
    postgres = session.bind.dialect.name == "postgresql"
    values = {**params, "take_lead": lead_id, "take_member": member_id, "take_now": now}
    row = (await session.execute(_take_statement(condition, postgres), values)).first()
    if row is None:
        return None
    if not postgres:
        await session.execute(_EVENT, values)
    stale = session.identity_map.get(session.identity_key(Lead, lead_id))
    if stale is not None:  # a Lead this session already holds shows the change when next read
        session.expire(stale)
    return Claimed(*row)
