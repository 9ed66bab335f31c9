"""An acknowledged message is never lost: a crash anywhere after the 200 still ends in one reply."""
import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from bot.messages import Incoming
from bot.simulator import WeComSimulator
from store import inbox
from store.db import Database
from store.models import InboxMessage, OutboxMessage, utcnow
from tests.conftest import MEMBERS, eventually, free_port, make_config, seed, start_stack


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
    stack = await start_stack(make_config(sqlite_url))
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
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    from store.db import migrate
    await asyncio.to_thread(migrate, url)
    await seed(url)
    config = make_config(url)
    sim_port, bot_port = free_port(), free_port()
    w = config.wecom
    config_file = tmp_path / "bot.toml"
    config_file.write_text(
        f'[server]\nport = {bot_port}\n[database]\nurl = "{url}"\n'
        f'[wecom]\ncorp_id = "{w.corp_id}"\nagent_id = {w.agent_id}\napi_base_url = "http://127.0.0.1:{sim_port}"\n'
        f'[inbox]\nlease_seconds = 2\nsweep_interval_seconds = 0.2\n'
        f'[outbox]\nlease_seconds = 2\nbackoff_base_seconds = 0.2\nbackoff_max_seconds = 0.5\n')
    env = {**os.environ, "PARTNERBOT_WECOM_SECRET": w.secret, "PARTNERBOT_WECOM_TOKEN": w.token,
           "PARTNERBOT_WECOM_ENCODING_AES_KEY": w.encoding_aes_key}
    sim = WeComSimulator(corp_id=w.corp_id, agent_id=w.agent_id, secret=w.secret, token=w.token,
                         encoding_aes_key=w.encoding_aes_key, callback_url=f"http://127.0.0.1:{bot_port}/wecom/callback",
                         directory={m.userid: m.name for m in MEMBERS})
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sim_port).start()

    def start_bot() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "bot", "serve", "--config", str(config_file)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def healthy() -> bool:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{bot_port}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    bot = start_bot()
    try:
        await eventually(healthy, timeout=30)
        sim.api_available = False  # WeCom's API fails: the reply cannot go out yet
        delivery = await sim.send_text("p2", "help")
        assert delivery.acknowledged
        await asyncio.sleep(0.5)
        bot.send_signal(signal.SIGKILL)
        bot.wait(10)
        assert sim.bot_messages("p2") == []

        sim.api_available = True
        bot = start_bot()
        [reply] = await sim.wait_for_bot_messages("p2", 1, timeout=30)
        assert reply.body["content"].startswith("Hi Li Na")
        await asyncio.sleep(1.5)
        assert len(sim.bot_messages("p2")) == 1
    finally:
        bot.kill()
        bot.wait(10)
        await runner.cleanup()
