"""Partners looked up: by the name people type (chat, admin API, CSV) or by id."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Partner


async def partner_by_name(session: AsyncSession, name: str) -> Partner | None:
    """The partner called exactly `name` (names are unique: onboarding refuses a second one)."""
    return await session.scalar(select(Partner).where(Partner.name == name))
