"""Once per period across instances: a periodic job claims (name, period) by inserting it; the
unique key lets exactly one instance win, and a run that fails rolls its claim back with it."""
from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import JobRun, utcnow


async def claim_run(session: AsyncSession, name: str, period: str) -> bool:
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    claimed = await session.scalar(insert(JobRun).values(name=name, period=period, at=utcnow())
                                   .on_conflict_do_nothing(index_elements=["name", "period"]).returning(JobRun.id))
    return claimed is not None
