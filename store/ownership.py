"""A lead changing hands: the one place that writes who holds a lead, its status, and the audit
event that says so (claim, assignment by rule or admin, a form's sharer, return, recycling).

The change is one conditional UPDATE: `only_if` names what must still hold when it runs, so of
two instances or members acting on one lead at once exactly one wins, on SQLite and PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Lead, LeadEvent, Member, utcnow


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
