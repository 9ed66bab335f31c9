"""A broadcast reaches every member exactly once: under WeCom throttling, across a kill -9 of the
sending process, and with two instances sending from one PostgreSQL + Redis."""
import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from redis.asyncio import Redis

from bot.app import create_app
from store.members import MemberRow
from tests.conftest import (MEMBERS, ServeProcess, Stack, eventually, free_port, make_config, seed, serve_env,
                            simulator_for, start_stack)

CROWD = [MemberRow(0, f"m{i:04d}", f"成员{i}", "partner", f"伙伴{i % 7}", "华东", ()) for i in range(500)]
DIRECTORY = {m.userid: m.name for m in [*MEMBERS, *CROWD]}


async def broadcast_all(stack_or_sim, task_title: str = "Launch") -> None:  # type: ignore[no-untyped-def]
    sim = getattr(stack_or_sim, "sim", stack_or_sim)
    await sim.send_text("mkt1", f"newtask {task_title} | https://brand.example/launch")
    await sim.wait_for_bot_messages("mkt1", 1, timeout=30)
    await sim.send_text("mkt1", "broadcast 1 all confirm")
    [_, reply] = await sim.wait_for_bot_messages("mkt1", 2, timeout=30)
    assert "on its way to 502 member(s)" in reply.body["content"], reply.body


def cards_per_member(sim) -> Counter:  # type: ignore[no-untyped-def]
    return Counter(e.userid for e in sim.bot_messages() if e.msgtype == "template_card")


async def all_delivered_once(sim) -> bool:  # type: ignore[no-untyped-def]
    counts = cards_per_member(sim)
    assert max(counts.values(), default=1) == 1, [u for u, n in counts.items() if n > 1][:5]
    return len(counts) == 502


@pytest.fixture
async def crowd_db(postgres_url: str) -> str:
    await seed(postgres_url, [*MEMBERS, *CROWD])
    return postgres_url


async def _flush_redis(redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    keys = [k async for k in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


@pytest.fixture
async def crowd_stack(crowd_db: str, redis_url: str) -> AsyncIterator[Stack]:
    stack = await start_stack(make_config(crowd_db, redis_url), directory=DIRECTORY)
    yield stack
    await stack.stop()
    await _flush_redis(redis_url, stack.config.redis.key_prefix)


async def test_every_member_gets_exactly_one_card(crowd_stack: Stack) -> None:
    await broadcast_all(crowd_stack)
    await eventually(lambda: all_delivered_once(crowd_stack.sim), timeout=60)
    await asyncio.sleep(0.5)
    assert await all_delivered_once(crowd_stack.sim)


async def test_throttled_by_wecom_for_a_while_still_exactly_once(crowd_stack: Stack) -> None:
    crowd_stack.sim.send_latency = 0.002
    # "api freq out of limit" in the middle of it: after the replies to mkt1 and 100 cards
    crowd_stack.sim.fail_sends_for(45009, 1.5, after_sends=2 + 100)
    await broadcast_all(crowd_stack)
    await eventually(lambda: all_delivered_once(crowd_stack.sim), timeout=90)
    assert crowd_stack.sim.api_calls["message/send"] > 2 + 502  # some calls were refused and retried


async def test_wecom_refusing_concurrency_narrows_the_sends_still_exactly_once(crowd_stack: Stack) -> None:
    crowd_stack.sim.send_latency = 0.005
    crowd_stack.sim.max_concurrent_sends = 4  # the bot sends 16 at once until WeCom says 45033
    await broadcast_all(crowd_stack)
    await eventually(lambda: all_delivered_once(crowd_stack.sim), timeout=90)
    refused = crowd_stack.sim.api_calls["message/send 45033"]
    # Refused calls are retried, and the concurrency halves on them and grows back slowly, so
    # WeCom refuses few (resuming at 16 after every pause would be refused 12 at a time).
    assert 0 < refused < 502 // 10, refused


async def test_two_instances_sending_together_still_exactly_once(crowd_stack: Stack) -> None:
    second = web.AppRunner(create_app(crowd_stack.config), access_log=None)
    await second.setup()
    await web.TCPSite(second, "127.0.0.1", free_port()).start()
    try:
        crowd_stack.sim.send_latency = 0.005
        await broadcast_all(crowd_stack)
        await eventually(lambda: all_delivered_once(crowd_stack.sim), timeout=60)
        await asyncio.sleep(0.5)
        assert await all_delivered_once(crowd_stack.sim)
    finally:
        await second.cleanup()


async def test_kill_9_of_the_sender_mid_broadcast_then_restart(crowd_db: str, redis_url: str, tmp_path: Path) -> None:
    config = make_config(crowd_db, redis_url)
    bot_port, sim_port = free_port(), free_port()
    config.wecom.api_base_url = f"http://127.0.0.1:{sim_port}"
    sim = simulator_for(config, bot_port, DIRECTORY, send_latency=0.01)
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sim_port).start()
    bot = ServeProcess(serve_env(config, bot_port, PARTNERBOT_INBOX_LEASE_SECONDS="2",
                                 PARTNERBOT_OUTBOX_LEASE_SECONDS="2", PARTNERBOT_INBOX_SWEEP_INTERVAL_SECONDS="0.2",
                                 PARTNERBOT_OUTBOX_CONCURRENCY="4"), tmp_path, bot_port)
    try:
        await bot.start()
        await broadcast_all(sim)

        async def some_sent() -> bool:
            return len(cards_per_member(sim)) >= 100

        await eventually(some_sent, timeout=30)
        bot.kill()
        assert len(cards_per_member(sim)) < 502
        await bot.start()
        await eventually(lambda: all_delivered_once(sim), timeout=90)
        await asyncio.sleep(2.5)  # past the lease: anything taken over would show up now
        assert await all_delivered_once(sim)
    finally:
        bot.kill()
        await runner.cleanup()
        await _flush_redis(redis_url, config.redis.key_prefix)
