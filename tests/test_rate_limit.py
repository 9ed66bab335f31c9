"""WeCom drops messages over 30/min or 1,000/hour per member silently: the bot must hold them back."""
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from bot.app import DB
from bot.pipeline.ratelimit import MemberRateLimiter
from store.models import OutboxMessage, utcnow
from tests.conftest import eventually, make_config, seed, start_stack


@pytest.fixture(params=["in-process", "redis"])
async def limiter(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "in-process":
        yield MemberRateLimiter(None, "", per_minute=3, per_hour=5)
        return
    redis_url = request.getfixturevalue("redis_url")
    redis = Redis.from_url(redis_url)
    prefix = f"pbtest:rl:{id(request)}:"
    yield MemberRateLimiter(redis, prefix, per_minute=3, per_hour=5)
    keys = [k async for k in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_sliding_minute_and_hour_windows(limiter: MemberRateLimiter) -> None:
    t = 1_000_000.0
    assert [await limiter.reserve("u", t + i) for i in range(3)] == [0, 0, 0]
    assert await limiter.reserve("u", t + 10) == pytest.approx(50)  # the first slot frees at t+60
    assert await limiter.reserve("other", t + 10) == 0  # per member
    assert await limiter.reserve("u", t + 60.5) == 0
    assert await limiter.reserve("u", t + 61.5) == 0
    # 5 sends within the hour: the next waits for the oldest to be an hour old.
    assert await limiter.reserve("u", t + 200) == pytest.approx(3400)
    assert await limiter.reserve("u", t + 3600.5) == 0


async def test_the_bot_holds_back_what_wecom_would_drop(sqlite_url: str) -> None:
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.wecom.member_messages_per_minute = 3
    config.wecom.passive_reply_seconds = 0  # replies in the callback's answer are not message/send calls
    stack = await start_stack(config, per_member_per_minute=3)
    try:
        for _ in range(5):
            await stack.sim.send_text("p2", "help")

        async def five_rows() -> list[OutboxMessage]:
            async with stack.bot[DB].session() as session:
                rows = list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
            # Until both held rows are back from being claimed: 3 sent, 2 pending.
            statuses = sorted(r.status for r in rows)
            return rows if statuses == ["pending"] * 2 + ["sent"] * 3 else []

        rows = await eventually(five_rows)
        assert len(stack.sim.bot_messages("p2")) == 3
        assert stack.sim.dropped == []  # nothing was lost silently
        held = [r for r in rows if r.status == "pending"]
        assert len(held) == 2 and all(r.attempts == 0 for r in held)
        assert all(50 < (r.next_attempt_at - utcnow()).total_seconds() <= 61 for r in held)
    finally:
        await stack.stop()
