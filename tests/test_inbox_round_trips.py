"""Processing a chat message in few round trips (issue 17) without giving up exactly-once: the reply
and the message's end written in one statement."""
from datetime import timedelta

from handlers.replies import Incoming
from store import inbox, outbox
from store.db import Database
from store.models import utcnow
from tests.conftest import sql_rows


async def _store(db: Database, userid: str, text: str, key: str) -> inbox.Claim:
    message, now = Incoming("wecom", userid, "text", text=text), utcnow()
    async with db.single_statement() as session:
        row_id = await inbox.add(session, channel="wecom", dedupe_key=key, user_id=userid,
                                 payload=message.to_payload(), claimed_at=now)
    assert row_id is not None
    return inbox.Claim(row_id, 1, message.to_payload(), now)


async def test_a_reply_is_queued_with_the_messages_end_only_while_the_claim_holds(database_url: str) -> None:
    db = Database(database_url)
    try:
        first, second = await _store(db, "p1", "help", "k1"), await _store(db, "p1", "help", "k2")
        async with db.session() as session:  # a sweeper took the second over: its claim moved on
            assert await inbox.claim(session, second.id, timedelta(seconds=-1)) is not None
        payload = {"kind": "text", "content": "hi"}
        async with db.session() as session:
            queued = await outbox.add_finishing(session, first, channel="wecom", recipient="p1", payload=payload,
                                                claimed=True)
            lost = await outbox.add_finishing(session, second, channel="wecom", recipient="p1", payload=payload,
                                              claimed=True)
        assert queued is not None and queued.attempts == 1 and lost is None
        assert await sql_rows(database_url, "SELECT id, inbox_id, status FROM outbox") == [
            (queued.id, first.id, "sending")]
        assert await sql_rows(database_url, "SELECT id, status FROM inbox ORDER BY id") == [
            (first.id, "done"), (second.id, "processing")]
    finally:
        await db.dispose()
