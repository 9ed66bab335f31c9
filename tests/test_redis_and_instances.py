"""PostgreSQL + Redis, as production runs it: shared de-duplication, shared token, degraded mode."""
import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from bot.app import create_app
from bot.channels.wecom_api import WeComClient
from store.redis import SharedKeys
from tests.conftest import Stack, free_port, make_config, seed, start_stack


async def _stop(stack: Stack, *extra: web.AppRunner) -> None:
    for runner in [*extra, *reversed(stack.runners)]:
        await runner.cleanup()


@pytest.fixture
async def pg_redis_stack(postgres_url: str, redis_url: str) -> AsyncIterator[Stack]:
    await seed(postgres_url)
    stack = await start_stack(make_config(postgres_url, redis_url))
    yield stack
    redis = Redis.from_url(redis_url)
    keys = [k async for k in redis.scan_iter(match=stack.config.redis.key_prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    await _stop(stack)


async def test_help_on_postgres_and_redis(pg_redis_stack: Stack) -> None:
    await pg_redis_stack.sim.send_text("p1", "帮助")
    [reply] = await pg_redis_stack.sim.wait_for_bot_messages("p1", 1)
    assert "帮助 — 查看可用命令" in reply.body["content"]


async def test_retries_are_deduplicated_with_redis(pg_redis_stack: Stack) -> None:
    """The inbox's unique key spots them (Redis keeps no "seen" key in front of it any more)."""
    sim = pg_redis_stack.sim
    xml = sim.text_xml("p2", "help", "5550001", int(time.time()))
    deliveries = await asyncio.gather(*(sim.deliver(xml, "5550001") for _ in range(3)))
    assert all(d.acknowledged for d in deliveries)
    await sim.wait_for_bot_messages("p2", 1)
    await asyncio.sleep(0.6)
    assert len(sim.bot_messages("p2")) == 1


async def test_two_instances_receiving_the_same_retry_answer_once(pg_redis_stack: Stack) -> None:
    """WeCom's retry may land on another instance behind the load balancer."""
    stack = pg_redis_stack
    second = web.AppRunner(create_app(stack.config), access_log=None)
    await second.setup()
    port = free_port()
    await web.TCPSite(second, "127.0.0.1", port).start()
    try:
        xml = stack.sim.text_xml("p2", "help", "5550002", int(time.time()))
        urls = [stack.bot_url, f"http://127.0.0.1:{port}"] * 3
        async with aiohttp.ClientSession() as http:
            async def post(url: str) -> int:
                query, body = stack.sim.encrypt_callback(xml)
                async with http.post(f"{url}/wecom/callback?{query}", data=body) as response:
                    stack.sim.take_answer("p2", await response.read())  # as WeCom: a passive reply is shown
                    return response.status
            assert await asyncio.gather(*(post(u) for u in urls)) == [200] * 6
        await stack.sim.wait_for_bot_messages("p2", 1)
        await asyncio.sleep(0.8)
        assert len(stack.sim.bot_messages("p2")) == 1
    finally:
        await second.cleanup()


async def test_access_token_is_shared_between_instances(pg_redis_stack: Stack, redis_url: str) -> None:
    stack = pg_redis_stack
    async with aiohttp.ClientSession() as http:
        clients = [WeComClient(stack.config.wecom, http, SharedKeys(Redis.from_url(redis_url), stack.config.redis.key_prefix))
                   for _ in range(3)]
        tokens = [await c.access_token() for c in clients]
        for c in clients:
            await c.shared.redis.aclose()
    assert len(set(tokens)) == 1
    assert stack.sim.api_calls["gettoken"] == 1


async def test_redis_outage_degrades_to_the_database(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Redis unreachable: callbacks are still acknowledged, de-duplicated (by the database) and answered."""
    await seed(postgres_url)
    import store.redis
    store.redis._last_warned.clear()  # the degraded warning is rate-limited per process
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    stack = await start_stack(make_config(postgres_url, dead_redis))
    try:
        caplog.set_level(logging.WARNING)
        xml = stack.sim.text_xml("p2", "help", "5550003", int(time.time()))
        deliveries = await asyncio.gather(*(stack.sim.deliver(xml, "5550003") for _ in range(2)))
        assert all(d.acknowledged for d in deliveries)
        [reply] = await stack.sim.wait_for_bot_messages("p2", 1)
        assert reply.body["content"].startswith("Hi Li Na")
        await asyncio.sleep(0.6)
        assert len(stack.sim.bot_messages("p2")) == 1
        assert "redis unavailable" in caplog.text
    finally:
        await _stop(stack)
