"""An acknowledged message is never lost: a crash anywhere after the 200 still ends in one reply."""
import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from handlers.replies import Incoming
from store import inbox
from store.db import Database
from store.models import InboxMessage, OutboxMessage, utcnow
from tests.conftest import (ServeProcess, eventually, free_port, make_config, migrated_sqlite, seed, serve_env,
                            simulator_for, start_stack)


async def _stop(stack) -> None:  # type: ignore[no-untyped-def]
    for runner in reversed(stack.runners):
        await runner.cleanup()


@pytest.mark.parametrize("left_as", ["pending", "processing"])
async def test_inbox_rows_left_by_a_dead_instance_are_answered_once(sqlite_url: str, left_as: str) -> None:
    await seed(sqlite_url)
    db = Database(sqlite_url)
    message = Incoming("wecom", "p2", "text", text="help")
    async with db.session() as s:
        row_id = await inbox.add(s, channel="wecom", dedupe_key="wecom:msg:1", user_id="p2", payload=message.to_payload())
    if left_as == "processing":  # claimed by an instance that then died
        async with db.session() as s:
            await inbox.claim(s, row_id, timedelta(seconds=30))
            row = await s.get(InboxMessage, row_id)
            row.claimed_at = utcnow() - timedelta(minutes=5)
    await db.dispose()

    stack = await start_stack(make_config(sqlite_url))
    try:
        [reply] = await stack.sim.wait_for_bot_messages("p2", 1)
        assert reply.body["content"].startswith("Hi Li Na")
        await asyncio.sleep(1.0)
        assert len(stack.sim.bot_messages("p2")) == 1
    finally:
        await _stop(stack)


async def test_outbox_row_whose_sender_died_is_resent_with_wecoms_duplicate_check(sqlite_url: str) -> None:
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.wecom.passive_reply_seconds = 0  # the reply goes through message/send, whose sender dies
    stack = await start_stack(config)
    db = Database(sqlite_url)
    try:
        await stack.sim.send_text("p2", "help")
        sent = await eventually(lambda: _outbox(db, "sent"))
        # The state a sender leaves when it dies after WeCom accepted the message but before marking it.
        async with db.session() as s:
            row = await s.get(OutboxMessage, sent.id)
            row.status, row.claimed_at = "sending", utcnow() - timedelta(minutes=5)
        resent = await eventually(lambda: _outbox(db, "sent"))
        assert resent.attempts == 2
        assert stack.sim.api_calls["message/send"] == 2
        assert [d["reason"] for d in stack.sim.dropped] == ["duplicate"]
        assert len(stack.sim.bot_messages("p2")) == 1  # the member saw it once
    finally:
        await db.dispose()
        await _stop(stack)


async def _outbox(db: Database, status: str) -> OutboxMessage | None:
    async with db.session() as s:
        return await s.scalar(select(OutboxMessage).where(OutboxMessage.status == status))


async def test_kill_9_between_acknowledgement_and_reply(tmp_path: Path) -> None:
    """A real `partnerbot serve` process acknowledges a message while the WeCom API is down, is
    killed with SIGKILL, and restarted: the member gets the reply exactly once."""
    url = await migrated_sqlite(tmp_path)
    await seed(url)
    config = make_config(url)
    sim_port, bot_port = free_port(), free_port()
    config.wecom.api_base_url = f"http://127.0.0.1:{sim_port}"
    sim = simulator_for(config, bot_port)
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sim_port).start()
    bot = ServeProcess(serve_env(config, bot_port, PARTNERBOT_INBOX_LEASE_SECONDS="2",
                                 PARTNERBOT_INBOX_SWEEP_INTERVAL_SECONDS="0.2", PARTNERBOT_OUTBOX_LEASE_SECONDS="2",
                                 PARTNERBOT_OUTBOX_BACKOFF_BASE_SECONDS="0.2",
                                 PARTNERBOT_OUTBOX_BACKOFF_MAX_SECONDS="0.5",
                                 # The reply must wait for the API (a passive one would not).
                                 PARTNERBOT_WECOM_PASSIVE_REPLY_SECONDS="0"), tmp_path, bot_port)
    try:
        await bot.start()
        sim.api_available = False  # WeCom's API fails: the reply cannot go out yet
        delivery = await sim.send_text("p2", "help")
        assert delivery.acknowledged
        await asyncio.sleep(0.5)
        bot.kill()
        assert sim.bot_messages("p2") == []

        sim.api_available = True
        await bot.start()
        [reply] = await sim.wait_for_bot_messages("p2", 1, timeout=30)
        assert reply.body["content"].startswith("Hi Li Na")
        await asyncio.sleep(1.5)
        assert len(sim.bot_messages("p2")) == 1
    finally:
        bot.kill()
        await runner.cleanup()


async def test_a_message_waiting_for_a_free_worker_keeps_its_lease(sqlite_url: str) -> None:
    """A message is stored claimed as it arrives; when every worker is busy its lease runs while it
    waits, so it is renewed when a worker takes it, and another instance's sweeper leaves it alone."""
    from bot.app import INBOX

    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.inbox.lease_seconds = 1
    config.wecom.passive_reply_seconds = 0  # the callback returns once the message is stored
    stack = await start_stack(config)
    processor = stack.bot[INBOX]
    processor._concurrency = asyncio.Semaphore(1)
    try:
        await processor._concurrency.acquire()  # the only worker is busy
        delivery = await stack.sim.send_text("p2", "help")
        assert delivery.acknowledged
        db = Database(sqlite_url)
        try:
            async with db.session() as s:
                stored = await s.scalar(select(InboxMessage))
            await asyncio.sleep(0.5)  # > a third of the lease
            processor._concurrency.release()
            [reply] = await stack.sim.wait_for_bot_messages("p2", 1)
            assert reply.body["content"].startswith("Hi Li Na")
            async with db.session() as s:
                done = await s.scalar(select(InboxMessage))
            assert (done.status, done.attempts) == ("done", 1)
            assert done.claimed_at >= stored.claimed_at + timedelta(seconds=0.5)  # renewed when taken up
        finally:
            await db.dispose()
    finally:
        await _stop(stack)
