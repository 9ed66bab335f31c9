"""Partners looked up: by the name people type (chat, admin API, CSV) or by id."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Partner


async def partner_by_name(session: AsyncSession, name: str) -> Partner | None:
    """The partner called exactly `name` (names are unique: onboarding refuses a second one)."""
    return await session.scalar(select(Partner).where(Partner.name == name))


async def partner_by_id(session: AsyncSession, partner_id: int) -> Partner | None:
    return await session.get(Partner, partner_id)


async def partners_by_name(session: AsyncSession) -> list[Partner]:
    return list(await session.scalars(select(Partner).order_by(Partner.name)))


async def partner_names(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(Partner.name)))


async def partner_names_by_id(session: AsyncSession, partner_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(partner_ids))
    if not ids:
        return {}
    return dict((await session.execute(select(Partner.id, Partner.name).where(Partner.id.in_(ids)))).all())


async def partner_ids_and_names(session: AsyncSession) -> list[tuple[int, str]]:
    """Every partner as (id, name), oldest first: the order reports list them in."""
    return [(pid, name) for pid, name in await session.execute(select(Partner.id, Partner.name).order_by(Partner.id))]
