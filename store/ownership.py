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

from sqlalchemy import Integer, bindparam, exists, func, insert, literal, literal_column, select, true, update
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


_LEADS, _EVENTS, _MEMBERS = Lead.__table__, LeadEvent.__table__, Member.__table__
# Serialises one member's claims (their limits are read after it): a write of their own row, which
# holds a row lock on PostgreSQL until the transaction ends, and the write lock on SQLite.
_LOCK_MEMBER = update(_MEMBERS).where(_MEMBERS.c.id == bindparam("take_member")).values(updated_at=bindparam("take_now"))


@lru_cache(maxsize=8)
def _take_statement(condition: ColumnElement[bool], postgres: bool) -> Executable:
    """The lead `take_lead` to `take_member` if `condition` still holds. Core, built once per condition:
    a claim is the busiest write in the pool, and building and loading ORM objects cost it more CPU
    than the database's work.

    On PostgreSQL it is one round trip: a data-modifying CTE locks the member's row, the lead is taken
    only if it did, and the audit event is written too. The lock is taken only if no one changed the
    row since the statement's snapshot (the row's xmin, the transaction that wrote it, is the one the
    snapshot saw): then no claim of theirs committed that `condition`'s counts, read in that snapshot,
    could miss. If someone did (two claims of one member at once), the first column says so and
    nothing is written. SQLite has no such CTE: the caller locks first, and writes the event after."""
    member, now = bindparam("take_member", type_=Integer()), bindparam("take_now", type_=UTCDateTime())
    taken = (update(_LEADS).where(_LEADS.c.id == bindparam("take_lead"), condition)
             .values(owner_id=member, status="claimed", claimed_at=now, updated_at=now)
             .returning(*(_LEADS.c[name] for name in Claimed._fields)))
    if not postgres:
        return taken
    seen = _MEMBERS.alias("seen")
    locked = (_LOCK_MEMBER.where(literal_column("members.xmin") == select(literal_column("seen.xmin"))
                                 .select_from(seen).where(seen.c.id == member).scalar_subquery())
              .returning(_MEMBERS.c.id).cte("locked"))
    taken_cte = taken.where(exists(select(locked.c.id))).cte("taken")
    event = insert(_EVENTS).from_select(
        ["lead_id", "kind", "member_id", "note", "at"],
        select(taken_cte.c.id, literal("claimed"), member, literal(""), now)).cte("taken_event")
    return (select(select(func.count()).select_from(locked).scalar_subquery().label("locked"), taken_cte)
            .select_from(select(literal(1).label("one")).subquery("one").outerjoin(taken_cte, true()))
            .add_cte(event))


_EVENT = insert(_EVENTS).values(lead_id=bindparam("take_lead"), kind="claimed", member_id=bindparam("take_member"),
                                note="", at=bindparam("take_now"))


async def take(session: AsyncSession, lead_id: int, member_id: int, *, condition: ColumnElement[bool],
               params: dict[str, Any], now: datetime) -> Claimed | None:
    """Claim the lead for `member_id`: owner, status "claimed" and its "claimed" event, if `condition`
    (built once, its values in `params`) holds when the UPDATE runs; None if it does not (nothing
    written). A conditional UPDATE as in hand_over: of two at once, exactly one wins. Either way the
    member's row is locked first and stays locked until the transaction ends, so `condition` may count
    what the member holds and claimed, and so may the caller after a None."""
    if session.new or session.dirty or session.deleted:
        await session.flush()  # pending changes go first, not over the UPDATE
    values = {**params, "take_lead": lead_id, "take_member": member_id, "take_now": now}
    if session.bind.dialect.name == "postgresql":
        statement = _take_statement(condition, True)
        locked, *row = (await session.execute(statement, values)).one()
        if not locked:  # their row changed since the snapshot: wait for its lock, then again (it holds now)
            await session.execute(_LOCK_MEMBER, values)
            locked, *row = (await session.execute(statement, values)).one()
        if not locked or row[0] is None:  # (not locked twice: no such member row, so nothing to serialise)
            return None
    else:
        await session.execute(_LOCK_MEMBER, values)
        found = (await session.execute(_take_statement(condition, False), values)).first()
        if found is None:
            return None
        await session.execute(_EVENT, values)
        row = list(found)
    stale = session.identity_map.get(session.identity_key(Lead, lead_id))
    if stale is not None:  # a Lead this session already holds shows the change when next read
        session.expire(stale)
    return Claimed(*row)
