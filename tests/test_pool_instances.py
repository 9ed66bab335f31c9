"""50 members claim one lead at the same moment through two bot instances on PostgreSQL + Redis."""
import asyncio
import time

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from bot.app import create_app
from store.members import MemberRow
from tests.conftest import MEMBERS, free_port, make_config, seed, start_stack
from tests.test_pool import add_leads

CROWD = [MemberRow(0, f"s{i:02d}", f"销售{i}", "partner", "星河科技", "华东", ()) for i in range(50)]


async def test_fifty_claims_through_two_instances_one_owner(postgres_url: str, redis_url: str) -> None:
    await seed(postgres_url, [*MEMBERS, *CROWD])
    await add_leads(postgres_url)
    stack = await start_stack(make_config(postgres_url, redis_url),
                              directory={m.userid: m.name for m in [*MEMBERS, *CROWD]})
    second = web.AppRunner(create_app(stack.config), access_log=None)
    await second.setup()
    port = free_port()
    await web.TCPSite(second, "127.0.0.1", port).start()
    try:
        urls = [stack.bot_url, f"http://127.0.0.1:{port}"]
        async with aiohttp.ClientSession() as http:
            async def claim(i: int, member: MemberRow) -> int:
                xml = stack.sim.text_xml(member.userid, "领取 1", str(9_000_000 + i), int(time.time()))
                query, body = stack.sim.encrypt_callback(xml)
                async with http.post(f"{urls[i % 2]}/wecom/callback?{query}", data=body) as response:
                    stack.sim.take_answer(member.userid, await response.read())  # as WeCom: shows a passive reply
                    return response.status
            assert await asyncio.gather(*(claim(i, m) for i, m in enumerate(CROWD))) == [200] * 50
        replies = []
        for member in CROWD:
            [reply] = await stack.sim.wait_for_bot_messages(member.userid, 1, timeout=30)
            replies.append(reply.body["content"])
        winners = [r for r in replies if r.startswith("线索 #1 已归您")]
        assert len(winners) == 1
        assert sorted(set(replies) - set(winners)) == ["抱歉：线索 #1 已被他人领取。"]
        assert all("13800000001" not in r for r in replies if r not in winners)  # masked for the 49
    finally:
        await second.cleanup()
        await stack.stop()
        redis = Redis.from_url(redis_url)
        keys = [k async for k in redis.scan_iter(match=stack.config.redis.key_prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
