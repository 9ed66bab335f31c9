"""Migration 0018 makes tracked_links and shares name a task or a content item: existing links keep
their clicks (SQLite rebuilds those tables: foreign keys must not break or cascade), and the downgrade
removes content copies with their clicks and touches, leaving every task's rows as they were."""
from __future__ import annotations

import asyncio

from alembic import command

from store.db import alembic_config, migrate
from tests.conftest import sql_rows, sql_run

NOW = "'2026-11-30 08:00:00+00:00'"


async def _round_trip(url: str) -> None:
    await asyncio.to_thread(migrate, url, "0017")
    await sql_run(
        url,
        "INSERT INTO members (id, userid, name, role, region, industries, active, push_channel, created_at, updated_at) "
        f"VALUES (1, 'p1', 'Li', 'partner', '', '[]', true, 'wecom', {NOW}, {NOW})",
        "INSERT INTO tasks (id, title, description, target_url, poster_template, status, created_at, updated_at) "
        f"VALUES (1, 'T', '', 'https://brand.example', 'classic', 'active', {NOW}, {NOW})",
        f"INSERT INTO tracked_links (id, code, task_id, member_id, channel, created_at) VALUES (1, 'task1', 1, 1, 'link', {NOW})",
        f"INSERT INTO shares (id, task_id, member_id, channel, created_at) VALUES (1, 1, 1, 'link', {NOW})",
        "INSERT INTO clicks (id, link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, event_id, held) "
        f"VALUES (1, 1, {NOW}, 'v', 'h', '', '', false, true, 'e1', false)")
    await asyncio.to_thread(migrate, url)
    assert await sql_rows(url, "SELECT id, link_id FROM clicks") == [(1, 1)]
    assert await sql_rows(url, "SELECT id, task_id, content_id FROM tracked_links") == [(1, 1, None)]
    assert await sql_rows(url, "SELECT id, task_id, content_id FROM shares") == [(1, 1, None)]

    await sql_run(
        url,
        "INSERT INTO content_items (id, kind, title, summary, url, body, audience, status, created_at, updated_at) "
        f"VALUES (1, 'link', 'C', '', 'https://brand.example/c', '', 'all', 'published', {NOW}, {NOW})",
        f"INSERT INTO tracked_links (id, code, content_id, member_id, channel, created_at) VALUES (2, 'copy1', 1, 1, 'link', {NOW})",
        f"INSERT INTO shares (id, content_id, member_id, channel, created_at) VALUES (2, 1, 1, 'link', {NOW})",
        "INSERT INTO clicks (id, link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, event_id, held) "
        f"VALUES (2, 2, {NOW}, 'v', 'h', '', '', false, true, 'e2', false)")
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0017")
    assert await sql_rows(url, "SELECT id, link_id FROM clicks") == [(1, 1)]
    assert await sql_rows(url, "SELECT id, task_id FROM tracked_links") == [(1, 1)]
    assert await sql_rows(url, "SELECT id, task_id FROM shares") == [(1, 1)]
    await asyncio.to_thread(migrate, url)


async def test_migration_0018_keeps_task_links_and_drops_copies_on_downgrade(empty_database_url: str) -> None:
    await _round_trip(empty_database_url)
