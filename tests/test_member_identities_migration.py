"""Migration 0017 moves bound WeChat openids from members.wechat_openid to member_identities rows,
keeping who is bound and where their pushes go; its downgrade moves them back."""
from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from sqlalchemy import text

from store.db import Database, alembic_config, migrate
from tests.conftest import POSTGRES_URL, _drop_postgres_database, _new_postgres_database, need


async def _query(url: str, sql: str) -> list[tuple]:
    db = Database(url)
    try:
        async with db.session() as session:
            return [tuple(r) for r in await session.execute(text(sql))]
    finally:
        await db.dispose()


async def _execute(url: str, *statements: str) -> None:
    db = Database(url)
    try:
        async with db.session() as session:
            for sql in statements:
                await session.execute(text(sql))
    finally:
        await db.dispose()


async def _round_trip(url: str) -> None:
    await asyncio.to_thread(migrate, url, "0016")
    now = "'2026-11-30 08:00:00+00:00'"
    await _execute(url,
                   f"INSERT INTO members (id, userid, name, role, region, industries, active, wechat_openid, push_channel, "
                   f"created_at, updated_at) VALUES (1, 'p1', 'Li', 'partner', '', '[]', true, 'oOPENID1', 'wechat', {now}, {now})",
                   f"INSERT INTO members (id, userid, name, role, region, industries, active, wechat_openid, push_channel, "
                   f"created_at, updated_at) VALUES (2, 'p2', 'Wang', 'partner', '', '[]', true, NULL, 'wecom', {now}, {now})")
    await asyncio.to_thread(migrate, url)
    assert await _query(url, "SELECT channel, external_id, member_id FROM member_identities") == [("wechat", "oOPENID1", 1)]
    assert await _query(url, "SELECT userid, push_channel FROM members ORDER BY id") == [("p1", "wechat"), ("p2", "wecom")]

    await asyncio.to_thread(command.downgrade, alembic_config(url), "0016")
    assert await _query(url, "SELECT userid, wechat_openid, push_channel FROM members ORDER BY id") == [
        ("p1", "oOPENID1", "wechat"), ("p2", None, "wecom")]


async def test_migration_0017_moves_openids_to_identities_and_back_on_sqlite(tmp_path: Path) -> None:
    await _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")


async def test_migration_0017_moves_openids_to_identities_and_back_on_postgres() -> None:
    need(POSTGRES_URL, "postgres")
    name, url = await _new_postgres_database()
    try:
        await _round_trip(url)
    finally:
        await _drop_postgres_database(name)
