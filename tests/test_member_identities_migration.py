"""Migration 0017 moves bound WeChat openids from members.wechat_openid to member_identities rows,
keeping who is bound and where their pushes go; its downgrade moves them back."""
from __future__ import annotations

import asyncio

from alembic import command

from store.db import alembic_config, migrate
from tests.conftest import sql_rows, sql_run


async def _round_trip(url: str) -> None:
    await asyncio.to_thread(migrate, url, "0016")
    now = "'2026-11-30 08:00:00+00:00'"
    await sql_run(url,
                   f"INSERT INTO members (id, userid, name, role, region, industries, active, wechat_openid, push_channel, "
                   f"created_at, updated_at) VALUES (1, 'p1', 'Li', 'partner', '', '[]', true, 'oOPENID1', 'wechat', {now}, {now})",
                   f"INSERT INTO members (id, userid, name, role, region, industries, active, wechat_openid, push_channel, "
                   f"created_at, updated_at) VALUES (2, 'p2', 'Wang', 'partner', '', '[]', true, NULL, 'wecom', {now}, {now})")
    await asyncio.to_thread(migrate, url)
    assert await sql_rows(url, "SELECT channel, external_id, member_id FROM member_identities") == [("wechat", "oOPENID1", 1)]
    assert await sql_rows(url, "SELECT userid, push_channel FROM members ORDER BY id") == [("p1", "wechat"), ("p2", "wecom")]

    await asyncio.to_thread(command.downgrade, alembic_config(url), "0016")
    assert await sql_rows(url, "SELECT userid, wechat_openid, push_channel FROM members ORDER BY id") == [
        ("p1", "oOPENID1", "wechat"), ("p2", None, "wecom")]


async def test_migration_0017_moves_openids_to_identities_and_back(empty_database_url: str) -> None:
    await _round_trip(empty_database_url)
