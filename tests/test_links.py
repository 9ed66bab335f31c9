"""Tracked links: `link N`, the redirect, click recording, `me`."""
import asyncio
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from bot.app import CLICKS, DB
from bot.web.clicks import ClickRecorder
from store.db import Database
from store.models import Click, Share, Task, TrackedLink
from tests.conftest import Stack, eventually, visitor_cookie

BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.40"


async def task_for_p1(stack: Stack, url: str = "https://brand.example/spring?ref=abc&utm_source=old#section") -> int:
    await stack.ask("mkt1", f"newtask Spring | {url}")
    await stack.ask("mkt1", "broadcast 1 partner:星河科技 confirm")
    await stack.sim.wait_for_bot_messages("p1", 1)
    return 1


async def link_code(stack: Stack, userid: str = "p1", task_id: int = 1) -> str:
    [reply] = await stack.ask(userid, f"link {task_id}")
    match = re.search(r"/t/([A-Za-z0-9_-]+)\n", reply)
    assert match, reply
    return match.group(1)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def stored_clicks(stack: Stack) -> list[Click]:
    await stack.bot[CLICKS].flush_all()
    async with stack.bot[DB].session() as session:
        return list(await session.scalars(select(Click).order_by(Click.id)))


async def test_link_is_personal_stable_and_recorded_as_a_share(stack: Stack) -> None:
    await task_for_p1(stack)
    [reply] = await stack.ask("p1", "链接 1")
    assert reply.startswith("您在任务 #1 的专属链接") and f"{stack.config.server.public_base_url}/t/" in reply
    code = await link_code(stack)
    assert len(code) >= 11 and code in reply
    async with stack.bot[DB].session() as session:
        assert await session.scalar(select(func.count()).select_from(TrackedLink)) == 1
        assert await session.scalar(select(func.count()).select_from(Share)) == 2  # each hand-out
    [mine] = await stack.ask("p1", "任务")
    assert "已分享" in mine


async def test_link_refusals(stack: Stack) -> None:
    await task_for_p1(stack)
    [reply] = await stack.ask("p2", "link 1")  # not sent to p2
    assert reply == "There is no task #1 for you. Send tasks to see yours."
    [reply] = await stack.ask("mkt1", "link 1")
    assert reply.startswith("“link” is for partner staff only")
    [reply] = await stack.ask("p1", "link one")
    assert reply.startswith("“one” is not a number")


async def test_redirect_adds_utm_and_keeps_query_and_fragment(stack: Stack, http: aiohttp.ClientSession) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    async with http.get(f"{stack.bot_url}/t/{code}?url=https://evil.example/", allow_redirects=False,
                        headers={"User-Agent": BROWSER}) as response:
        assert response.status == 302
        location = urlsplit(response.headers["Location"])
        assert "pb_vid" in response.cookies
    assert (location.scheme, location.netloc, location.path, location.fragment) == \
        ("https", "brand.example", "/spring", "section")
    assert parse_qs(location.query) == {"ref": ["abc"], "utm_source": ["partnerbot"], "utm_medium": ["link"],
                                        "utm_campaign": ["task-1"]}


@pytest.mark.parametrize("path", ["/t/AAAAAAAAAAA", "/t/short", "/t/<script>", "/t/https:%2F%2Fevil.example",
                                  "/t/" + "A" * 40, "/t//evil.example"])
async def test_unknown_codes_get_a_friendly_404_and_never_a_redirect(stack: Stack, http: aiohttp.ClientSession,
                                                                     path: str) -> None:
    async with http.get(f"{stack.bot_url}{path}", allow_redirects=False) as response:
        assert response.status == 404
        assert "Location" not in response.headers
        assert "链接不存在" in await response.text()


async def test_ended_task_is_410(stack: Stack, http: aiohttp.ClientSession) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    async with stack.bot[DB].session() as session:
        (await session.get(Task, 1)).status = "ended"
    from bot.web.links import LINK_CACHE_SECONDS  # noqa: F401  (the cache is per process; this link was never cached)
    async with http.get(f"{stack.bot_url}/t/{code}", allow_redirects=False) as response:
        assert response.status == 410 and "活动已结束" in await response.text()
    assert await stored_clicks(stack) == []


async def test_clicks_are_classified_and_never_hold_raw_ips(stack: Stack, http: aiohttp.ClientSession) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    url = f"{stack.bot_url}/t/{code}"
    stack.bot[CLICKS].flood_window = 1.0
    visitor = {"Cookie": visitor_cookie(stack.config, "a" * 20), "User-Agent": BROWSER, "Referer": "https://chat.example/x"}
    for _ in range(3):  # a flood from one visitor counts once per window
        async with http.get(url, allow_redirects=False, headers=visitor) as r:
            assert r.status == 302
    async with http.get(url, allow_redirects=False, headers={"User-Agent": "facebookexternalhit/1.1"}) as r:
        assert r.status == 302
    async with http.head(url, allow_redirects=False, headers={"Cookie": visitor_cookie(stack.config, "b" * 20),
                                                              "User-Agent": BROWSER}) as r:
        assert r.status == 302
    clicks = await stored_clicks(stack)
    assert [(c.visitor_id[:4], c.is_bot, c.is_unique) for c in clicks] == [
        ("aaaa", False, True), (clicks[1].visitor_id[:4], True, True), ("bbbb", True, True)]
    assert clicks[0].referrer == "https://chat.example/x" and clicks[0].user_agent == BROWSER
    for click in clicks:
        assert "127.0.0.1" not in str(vars(click)) and len(click.ip_hash) == 64

    await asyncio.sleep(1.05)  # after the flood window the same visitor counts again, but not as unique
    async with http.get(url, allow_redirects=False, headers=visitor) as r:
        assert r.status == 302
    last = (await stored_clicks(stack))[-1]
    assert (last.visitor_id, last.is_unique) == ("aaaaaaaaaaaaaaaaaaaa", False)

    [me] = await stack.ask("p1", "me")
    assert me.startswith("Your last 30 days: 1 share(s), 1 unique click(s) (bots excluded), 0 lead(s) from your links, "
                         "0 claimed from the pool, 0 won (¥0; every lead you hold counts, whatever its source).")
    assert "Rank by unique clicks: #1 of 2, #1 of 1 in your company." in me


async def test_no_click_is_lost_when_the_server_stops_gracefully_mid_load(stack: Stack) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async def visit(i: int) -> int:
            async with http.get(f"{stack.bot_url}/t/{code}", allow_redirects=False,
                                headers={"Cookie": visitor_cookie(stack.config, f"visitor{i:012d}"),
                                         "User-Agent": BROWSER}) as r:
                return r.status
        statuses = await asyncio.gather(*(visit(i) for i in range(300)))
    assert statuses == [302] * 300
    url = stack.config.database.url
    await stack.stop()  # graceful: the flusher writes what is buffered
    db = Database(url)
    try:
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Click)) == 300
    finally:
        await db.dispose()


async def test_clicks_buffered_in_redis_survive_their_instance(sqlite_url: str, redis_url: str) -> None:
    """Clicks in the Redis stream are written by whichever instance flushes next, even ones another
    instance read and died before acknowledging."""
    redis = Redis.from_url(redis_url)
    prefix = "pbtest:clk:" + __import__("secrets").token_hex(4) + ":"
    from tests.conftest import seed
    await seed(sqlite_url)
    db = Database(sqlite_url)
    async with db.session() as session:
        from store.members import get_member
        from store import links as link_store, tasks as task_store
        member = await get_member(session, "p1")
        task = await task_store.create_task(session, title="T", url="https://x.example", creator=None)
        link = await link_store.get_or_create_link(session, task, member, "link")
    first = ClickRecorder(db, redis, prefix, flood_window=10)
    for i in range(50):
        assert await first.record(link.id, f"v{i:020d}", "h" * 64, BROWSER, "", False) is not None
    # The first instance reads a batch, then dies before writing or acknowledging it.
    await redis.xgroup_create(first.stream, "writers", id="0", mkstream=True)
    await redis.xreadgroup("writers", "dead-instance", {first.stream: ">"}, count=20)
    second = ClickRecorder(db, redis, prefix, flood_window=10)
    second.claim_idle_ms = 0
    await second.flush_all()
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Click)) == 50
    assert await second.lag() == 0
    await redis.delete(first.stream)
    keys = [k async for k in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    await db.dispose()


@pytest.mark.parametrize("target, expected_query", [
    ("https://x.example/p?kw=%D6%D0%CE%C4&x&ref=a;b", "kw=%D6%D0%CE%C4&x&ref=a;b&utm_source=partnerbot&utm_medium=poster&utm_campaign=task-3"),
    ("https://x.example/p?utm_source=old&a=1", "a=1&utm_source=partnerbot&utm_medium=poster&utm_campaign=task-3"),
    ("https://x.example/p", "utm_source=partnerbot&utm_medium=poster&utm_campaign=task-3"),
])
def test_the_targets_own_query_is_kept_byte_for_byte(target: str, expected_query: str) -> None:
    from bot.web.links import with_utm
    assert urlsplit(with_utm(target, "poster", 3)).query == expected_query
