"""Faults with a real PostgreSQL: every connection dropped at once (what a database restart does to
its clients) mid-conversation — nothing hangs, nothing acknowledged is lost, nothing is answered twice."""
import asyncio
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url
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


async def test_database_restart_and_partition_through_a_proxy(postgres_url: str, redis_url: str) -> None:
    """The path to PostgreSQL goes down (a restart: connections cut, new ones refused), then is
    black-holed (a partition: connections accepted, never answered), then freezes (a silent
    partition: open connections carry nothing). Callbacks answer 503 within WeCom's 5 s instead of
    hanging, WeCom's retries land once the database is back, and every message is answered once."""
    from tests.tcp_proxy import TcpProxy

    await seed(postgres_url)
    proxy = TcpProxy(make_url(postgres_url).port or 5432)
    await proxy.start()
    proxied = make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    # WeCom keeps retrying (0.2 s apart here) for longer than the outages last.
    config = make_config(proxied, redis_url)
    # Work whose claim was written but whose release was not (the database went away in between)
    # is taken over when the lease runs out: short here, so the test need not wait 30 s.
    config.inbox.lease_seconds = config.outbox.lease_seconds = 3
    config.database.statement_timeout_seconds = 2
    stack: Stack = await start_stack(config, callback_retries=60)
    try:
        [hello] = await stack.ask("p1", "help")
        assert hello.startswith("Hi 张伟")

        await proxy.down()
        sending = asyncio.gather(*(stack.sim.send_text("p1", "help") for _ in range(3)))
        await asyncio.sleep(2.0)
        await proxy.up()
        deliveries = await sending
        assert all(d.attempts[-1] == "200" for d in deliveries)
        assert any("503" in d.attempts for d in deliveries)  # the outage was met, and answered
        assert not any("timeout" in d.attempts for d in deliveries)  # nothing hung past WeCom's 5 s

        await proxy.blackhole()
        sending = asyncio.ensure_future(stack.sim.send_text("p1", "帮助"))
        await asyncio.sleep(7.0)
        await proxy.up()
        delivery = await sending
        assert delivery.attempts[-1] == "200" and "503" in delivery.attempts
        assert "timeout" not in delivery.attempts, delivery.attempts

        # A silent partition: pooled connections freeze (no reset, no answer). The statement timeout
        # answers for them.
        await proxy.freeze()
        sending = asyncio.ensure_future(stack.sim.send_text("p1", "help"))
        await asyncio.sleep(7.0)
        await proxy.up()
        delivery = await sending
        assert delivery.attempts[-1] == "200" and "timeout" not in delivery.attempts, delivery.attempts

        replies = await stack.sim.wait_for_bot_messages("p1", 6, timeout=30)
        await asyncio.sleep(1.0)
        assert len(stack.sim.bot_messages("p1")) == 6 == len(replies)
        assert sum(r.body["content"].startswith("张伟，您好") for r in replies) == 1  # the one sent during the partition
    finally:
        await stack.stop()
        await proxy.stop()


async def test_slow_wecom_api_means_a_retry_but_one_message(sqlite_url: str) -> None:
    """WeCom answering after our timeout: the send counts as failed and is retried, but WeCom did
    deliver the first one; the retry carries WeCom's duplicate check, so the member sees one."""
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.wecom.api_timeout_seconds = 0.3
    config.wecom.passive_reply_seconds = 0  # the reply goes through the slow message/send
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
