"""Faults with a real PostgreSQL: every connection dropped at once (what a database restart does to
its clients) mid-conversation — nothing hangs, nothing acknowledged is lost, nothing is answered twice."""
import asyncio
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import Stack, make_config, seed, start_stack


async def drop_every_connection(url: str) -> int:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            return len((await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))).all())
    finally:
        await admin.dispose()


async def test_database_connections_dropped_mid_conversation(postgres_url: str, redis_url: str) -> None:
    await seed(postgres_url)
    stack: Stack = await start_stack(make_config(postgres_url, redis_url))
    try:
        [hello] = await stack.ask("p1", "help")  # the pool now holds live connections
        assert hello.startswith("Hi 张伟")
        assert await drop_every_connection(postgres_url) >= 1
        started = time.monotonic()
        deliveries = await asyncio.gather(*(stack.sim.send_text("p1", "help") for _ in range(5)))
        # A callback that met a dead connection answered 503 (not stored, so WeCom retries); none hung.
        assert all(d.attempts[-1] == "200" for d in deliveries), [d.attempts for d in deliveries]
        assert time.monotonic() - started < 15
        replies = await stack.sim.wait_for_bot_messages("p1", 6, timeout=20)
        await asyncio.sleep(1.0)  # let any duplicate show itself
        assert len(stack.sim.bot_messages("p1")) == 6 == len(replies)
        await drop_every_connection(postgres_url)  # and again: the pool heals each time
        delivery = await stack.sim.send_text("p1", "帮助")
        assert delivery.attempts[-1] == "200"
        [again] = (await stack.sim.wait_for_bot_messages("p1", 7, timeout=20))[-1:]
        assert again.body["content"].startswith("张伟，您好")
    finally:
        for runner in reversed(stack.runners):
            await runner.cleanup()


async def test_slow_wecom_api_means_a_retry_but_one_message(sqlite_url: str) -> None:
    """WeCom answering after our timeout: the send counts as failed and is retried, but WeCom did
    deliver the first one; the retry carries WeCom's duplicate check, so the member sees one."""
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.wecom.api_timeout_seconds = 0.3
    stack = await start_stack(config)
    try:
        stack.sim.send_latency = 0.6
        delivery = await stack.sim.send_text("p1", "help")
        assert delivery.attempts == ["200"]
        await asyncio.sleep(1.0)
        stack.sim.send_latency = 0.0
        [reply] = await stack.sim.wait_for_bot_messages("p1", 1, timeout=15)
        await asyncio.sleep(1.5)  # the retry has gone out by now
        assert stack.sim.api_calls["message/send"] >= 2  # it was retried...
        assert len(stack.sim.bot_messages("p1")) == 1  # ...and still seen once
        assert reply.body["content"].startswith("Hi 张伟")
    finally:
        for runner in reversed(stack.runners):
            await runner.cleanup()
