"""The redirect's link cache: a link is read from the database once, yet a task ended or a content
item retired (on any instance) ends its links within a second, and an item's expiry ends them on
time. Two caches on one database stand for two instances."""
import asyncio
from datetime import timedelta
from types import SimpleNamespace

import aiohttp
import pytest

from bot.web.links import LINK_CHANGES_CHECK_SECONDS, LinkCache
from store import content as content_store, links as link_store, tasks as task_store
from store.db import Database
from store.members import get_member
from store.models import ContentItem, Task, utcnow
from tests.conftest import Stack, eventually, seed
from tests.test_links import BROWSER, link_code, task_for_p1

REQUEST = SimpleNamespace()  # the caches below are given their database directly


class CountingDatabase:
    """The database, counting the sessions the cache opens."""

    def __init__(self, db: Database) -> None:
        self.db, self.sessions = db, 0

    def session(self):  # type: ignore[no-untyped-def]
        self.sessions += 1
        return self.db.session()


@pytest.fixture
async def db(database_url: str):  # type: ignore[no-untyped-def]
    await seed(database_url)
    database = Database(database_url)
    yield database
    await database.dispose()


async def a_task_link(db: Database) -> tuple[Task, str]:
    async with db.session() as session:
        task = await task_store.create_task(session, title="T", url="https://x.example/a", creator=None,
                                            status="active")
        link = await link_store.get_or_create_link(session, task, await get_member(session, "p1"), "link")
        return task, link.code


async def a_content_link(db: Database, **extra) -> tuple[ContentItem, str]:  # type: ignore[no-untyped-def]
    async with db.session() as session:
        item = await content_store.create_content(session, title="Article", creator=None,
                                                  url="https://x.example/article", **extra)
        copy = await content_store.take_copy(session, item, await get_member(session, "p1"))
        return item, copy.code


def two_instances(db: Database, check_every: float = 0.05) -> tuple[LinkCache, LinkCache]:
    return LinkCache(lambda _: db, check_every), LinkCache(lambda _: db, check_every)


async def test_a_cached_link_costs_no_target_read(db: Database) -> None:
    _, code = await a_task_link(db)
    counting = CountingDatabase(db)
    cache = LinkCache(lambda _: counting, check_every=3600)
    for _ in range(50):
        target = await cache.lookup(REQUEST, code)
        assert target is not None and not target.ended
    assert counting.sessions == 2  # the change check and the one read of the link


class AwayDatabase:
    """The database, until `away` is set: then every session fails as a lost connection would."""

    def __init__(self, db: Database) -> None:
        self.db, self.away, self.attempts = db, False, 0

    def session(self):  # type: ignore[no-untyped-def]
        if self.away:
            self.attempts += 1
            raise ConnectionRefusedError("database away")
        return self.db.session()


async def test_cached_links_keep_redirecting_while_the_database_is_away(db: Database) -> None:
    _, code = await a_task_link(db)
    flaky = AwayDatabase(db)
    cache = LinkCache(lambda _: flaky, check_every=0.01)
    assert (await cache.lookup(REQUEST, code)) is not None
    flaky.away = True
    await asyncio.sleep(0.02)
    for _ in range(20):  # the change check fails: the cached entry still answers
        target = await cache.lookup(REQUEST, code)
        assert target is not None and not target.ended
    assert flaky.attempts == 1  # one failed check, not one per redirect


async def test_ending_a_task_ends_its_links_on_every_instance(db: Database) -> None:
    task, code = await a_task_link(db)
    first, second = two_instances(db)
    assert not (await first.lookup(REQUEST, code)).ended and not (await second.lookup(REQUEST, code)).ended
    async with db.session() as session:
        await task_store.change_task(session, await session.get(Task, task.id), {"status": "ended"})
    await asyncio.sleep(0.1)
    assert (await first.lookup(REQUEST, code)).ended and (await second.lookup(REQUEST, code)).ended


async def test_a_changed_target_url_is_followed(db: Database) -> None:
    task, code = await a_task_link(db)
    first, second = two_instances(db)
    assert (await first.lookup(REQUEST, code)).target_url == "https://x.example/a"
    async with db.session() as session:
        await task_store.change_task(session, await session.get(Task, task.id), {"url": "https://x.example/b"})
    await asyncio.sleep(0.1)
    assert (await first.lookup(REQUEST, code)).target_url == "https://x.example/b"


async def test_retiring_or_expiring_content_ends_its_links(db: Database) -> None:
    item, code = await a_content_link(db)
    soon, soon_code = await a_content_link(db, expires_at=utcnow() + timedelta(seconds=1.5))
    first, second = two_instances(db, check_every=3600)  # no change check: only the expiry can end it
    assert not (await first.lookup(REQUEST, soon_code)).ended
    await asyncio.sleep(1.6)
    assert (await first.lookup(REQUEST, soon_code)).ended

    first, second = two_instances(db)
    assert not (await second.lookup(REQUEST, code)).ended
    async with db.session() as session:
        await content_store.update_content(session, await session.get(ContentItem, item.id), status="retired")
    await asyncio.sleep(0.1)
    assert (await second.lookup(REQUEST, code)).ended and (await first.lookup(REQUEST, code)).ended


async def test_the_redirect_answers_410_within_a_second_of_the_task_ending(stack: Stack) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async def status() -> int:
            async with http.get(f"{stack.bot_url}/t/{code}", allow_redirects=False,
                                headers={"User-Agent": BROWSER}) as response:
                return response.status

        assert await status() == 302
        from bot.app import DB
        async with stack.bot[DB].session() as session:
            await task_store.change_task(session, await session.get(Task, 1), {"status": "ended"})

        async def ended() -> bool:
            return await status() == 410
        await eventually(ended, timeout=LINK_CHANGES_CHECK_SECONDS + 1.5)
