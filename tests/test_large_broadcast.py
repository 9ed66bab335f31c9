"""A broadcast to thousands of `user:` targets gets a proper answer at once (issue 14, item 10): the
targets are resolved in chunks, never as one OR of 12,000 terms (too deep for SQLite's parser: an
error that was taken for a busy database, retried for 30 s, then an apology)."""
import sqlite3

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError, OperationalError

from bot.pipeline.inbox import is_transient
from bot.pipeline.router import Router
from handlers.replies import Incoming
from handlers import command_table
from store import tasks as task_store
from store.db import Database
from store.models import Member, OutboxMessage
from tests.conftest import Stack, make_config, seed


async def add_members(url: str, count: int) -> list[str]:
    userids = [f"u{i:05d}" for i in range(count)]
    db = Database(url)
    try:
        async with db.session() as session:
            await session.execute(insert(Member), [{"userid": u, "name": f"成员{u}", "role": "partner", "region": "",
                                                    "industries": [], "active": True} for u in userids])
    finally:
        await db.dispose()
    return userids


async def say(router: Router, db: Database, userid: str, text: str) -> str:
    async with db.session() as session:
        [reply] = await router.dispatch(session, Incoming("wecom", userid, "text", text=text))
    return reply.content  # type: ignore[union-attr]


async def test_twelve_thousand_user_targets(database_url: str) -> None:
    await seed(database_url)
    userids = await add_members(database_url, 12_000)
    db = Database(database_url)
    router = Router(command_table(), make_config(database_url))
    try:
        async with db.session() as session:
            task = await task_store.create_task(session, title="大促", url="https://brand.example/x", creator=None)
            members = await task_store.resolve_targets(session, [f"user:{u}" for u in userids] + ["user:p2"])
            assert len(members) == 12_001 and [m.id for m in members] == sorted(m.id for m in members)
            with pytest.raises(task_store.TargetError, match="no member has user id “nobody”"):
                await task_store.resolve_targets(session, [f"user:{u}" for u in userids] + ["user:nobody"])
        command = f"broadcast {task.id} " + " ".join(f"user:{u}" for u in userids)
        preview = await say(router, db, "mkt1", command)
        # The preview still fits one WeCom text (2,048 bytes), so it cannot quote the whole command back.
        assert "will go to 12000 member(s)" in preview and "“confirm” at the end" in preview, preview
        assert len(preview.encode()) < 2048
        done = await say(router, db, "mkt1", command + " confirm")
        assert "is on its way to 12000 member(s)" in done, done
        async with db.session() as session:
            queued = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.task_id == task.id, OutboxMessage.purpose == task_store.TASK_CARD))
        assert queued == 12_000
    finally:
        await db.dispose()


async def test_as_many_targets_as_one_chat_message_carries(stack: Stack) -> None:
    """Through WeCom for real: 3,000 ids (about 36 KB of text) fit in one callback."""
    userids = await add_members(stack.config.database.url, 3_000)
    [created] = await stack.ask("mkt1", "newtask 大促 | https://brand.example/x")
    task_id = created.split("#")[1].split(" ")[0].rstrip(":")
    targets = " ".join(f"user:{u}" for u in userids)
    [preview] = await stack.ask("mkt1", f"broadcast {task_id} {targets}")
    assert "will go to 3000 member(s)" in preview, preview
    [zh] = await stack.ask("mkt1", f"下发 {task_id} {targets}")
    assert "将发给 3000 人" in zh and "原命令并在末尾加上“确认”" in zh, zh


def test_errors_about_the_statement_itself_are_not_retried() -> None:
    def wrapped(message: str) -> OperationalError:
        return OperationalError("SELECT …", {}, sqlite3.OperationalError(message))

    assert not is_transient(wrapped("too many SQL variables"))
    assert not is_transient(wrapped("Expression tree is too large (maximum depth 1000)"))
    assert not is_transient(DBAPIError("SELECT …", {}, Exception("the number of query arguments cannot exceed 32767")))
    assert is_transient(wrapped("database is locked"))
    assert is_transient(ConnectionError("reset"))
    assert not is_transient(ValueError("a bug"))
