"""Once per period across instances: a periodic job claims (name, period) by inserting it; the
unique key lets exactly one instance win, and a run that fails rolls its claim back with it."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from store.db import dialect_insert
from store.models import JobRun, utcnow


async def claim_run(session: AsyncSession, name: str, period: str) -> bool:
    insert = dialect_insert(session)
    claimed = await session.scalar(insert(JobRun).values(name=name, period=period, at=utcnow())
                                   .on_conflict_do_nothing(index_elements=["name", "period"]).returning(JobRun.id))
    return claimed is not None
