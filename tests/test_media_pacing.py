"""media/upload is limited per WeCom company (10,000 a minute, 150,000 an hour, every app and instance
together; over it WeCom answers 45009 and blocks the API for the window). The bot paces its uploads
from one shared window instead: Redis across instances, this process without it."""
from __future__ import annotations

import asyncio
import io
import secrets

import aiohttp
import pytest
from PIL import Image
from redis.asyncio import Redis

from bot.channels.pacing import CallPacer, PacedOut
from bot.channels.wecom_api import WeComClient
from bot.simulator.wecom_rules import CallWindows
from store.redis import SharedKeys
from tests.conftest import Stack, make_config, seed, start_stack

# The simulator's and the bot's limit, shrunk from WeCom's so a test takes a second or two.
SMALL = [(4, 1.0)]


def png(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (i % 256, 0, 0)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def small_limit_stack(sqlite_url: str):  # type: ignore[no-untyped-def]
    await seed(sqlite_url)
    stack = await start_stack(make_config(sqlite_url))
    stack.sim.media_uploads = CallWindows(SMALL)
    yield stack
    await stack.stop()


async def upload_ten(stack: Stack, shared_keys: list[SharedKeys], limits: list[tuple[int, float]]) -> list[WeComClient]:
    async with aiohttp.ClientSession() as http:
        instances = [WeComClient(stack.config.wecom, http, shared) for shared in shared_keys]
        for client in instances:
            client.upload_pacer = CallPacer(client.shared, client.upload_pacer.key, limits)
        ids = await asyncio.gather(*(instances[i % len(instances)].upload_media("image", f"p{i}.png", png(i), "image/png")
                                     for i in range(10)))
    assert len(set(ids)) == 10
    return instances


async def test_without_pacing_wecom_refuses_uploads_over_the_limit(small_limit_stack: Stack) -> None:
    with pytest.raises(Exception, match="45009"):
        await upload_ten(small_limit_stack, [SharedKeys(None, "pace:")], [(10_000, 60)])
    assert small_limit_stack.sim.api_calls["media/upload refused"] > 0


@pytest.mark.parametrize("where", ["in-process", "redis"])
async def test_paced_uploads_of_every_instance_stay_under_the_company_limit(small_limit_stack: Stack, where: str,
                                                                           request: pytest.FixtureRequest) -> None:
    prefix = f"pbtest:pace:{secrets.token_hex(4)}:"
    redis = Redis.from_url(request.getfixturevalue("redis_url")) if where == "redis" else None
    try:
        # Two instances share the window through Redis; without Redis there is one instance.
        shared = [SharedKeys(redis, prefix) for _ in range(2 if redis is not None else 1)]
        instances = await upload_ten(small_limit_stack, shared, SMALL)
    finally:
        if redis is not None:
            await redis.aclose()
    assert small_limit_stack.sim.api_calls["media/upload refused"] == 0
    assert small_limit_stack.sim.api_calls["media/upload"] == 10
    assert sum(client.upload_pacer.waited for client in instances) > 0  # they did wait their turn


async def test_a_turn_further_off_than_a_send_should_wait_fails_as_transient() -> None:
    pacer = CallPacer(SharedKeys(None, "x:"), "wecom:pace:corp:media/upload", [(1, 60)], max_wait=1)
    await pacer.turn()
    with pytest.raises(PacedOut) as err:
        await pacer.turn()
    assert err.value.transient  # the outbox tries the message again later
    assert "used up for 61 s" in str(err.value)  # the minute, and the margin WeCom's clock may need
