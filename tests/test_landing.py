"""The landing form /l/<code>: validation, CSRF, rate limit, attribution, touches, the sharer told."""
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.app import CLICKS, DB
from store import pool
from store.leads import mask_phone, normalize_phone
from store.models import Lead, LeadEvent, LeadTouch
from tests.conftest import Stack, eventually
from tests.test_links import BROWSER, link_code, task_for_p1

GOOD = {"name": "王女士", "company": "华星制造", "phone": "138 0013 8000", "region": "上海", "industry": "制造",
        "consent": "yes"}


@pytest.fixture
async def visitor() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def open_form(stack: Stack, http: aiohttp.ClientSession, code: str) -> str:
    async with http.get(f"{stack.bot_url}/l/{code}") as response:
        assert response.status == 200
        page = await response.text()
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def leads(stack: Stack) -> list[Lead]:
    async with stack.bot[DB].session() as session:
        return list(await session.scalars(select(Lead)))


async def lead_notice_reached(stack: Stack, userid: str) -> None:
    """Wait for the new lead's notice (let go after the form's commit, bot/web/lead_notices.py): a test
    that then asks `userid` something must not take the notice for the answer."""
    async def arrived() -> bool:
        return any(m.body.get("content", "").startswith("🎉 新线索！") for m in stack.sim.bot_messages(userid))

    await eventually(arrived)


@pytest.mark.parametrize("raw, expected", [("13800138000", "13800138000"), ("+86 138-0013-8000", "13800138000"),
                                           ("8613800138000", "13800138000"), ("12800138000", None),
                                           ("1380013800", None), ("phone", None)])
def test_mainland_mobile_numbers(raw: str, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


def test_masking() -> None:
    assert mask_phone("13812345678") == "138****5678"


async def test_a_visitor_becomes_the_sharers_lead_with_touches(stack: Stack, visitor: aiohttp.ClientSession) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    async with visitor.get(f"{stack.bot_url}/t/{code}", allow_redirects=False) as r:  # an earlier click
        assert r.status == 302
    await stack.bot[CLICKS].flush_all()
    token = await open_form(stack, visitor, code)
    async with visitor.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "csrf": token}) as response:
        assert response.status == 200
        assert "提交成功" in await response.text()
    [lead] = await leads(stack)
    assert (lead.name, lead.phone, lead.status, lead.source, lead.task_id) == \
        ("王女士", "13800138000", "claimed", "form:link", 1)
    async with stack.bot[DB].session() as session:
        from store.members import get_member
        p1 = await get_member(session, "p1")
        assert (lead.owner_id, lead.partner_id) == (p1.id, p1.partner_id)
        kinds = [t.kind for t in await session.scalars(select(LeadTouch).order_by(LeadTouch.at))]
        events = [e.kind for e in await session.scalars(select(LeadEvent).order_by(LeadEvent.id))]
    assert kinds == ["click", "form"] and events == ["created", "assigned"]
    [note] = (await stack.sim.wait_for_bot_messages("p1", 3))[2:]
    assert note.body["content"].startswith("🎉 新线索！王女士（华星制造，138****8000）")
    [me] = await stack.ask("p1", "我的")
    assert "独立点击 1 次（不含机器访问），通过您的链接带来线索 1 条，从线索池领取 0 条，成交 0 单（¥0" in me


@pytest.mark.parametrize("change, field, message", [
    ({"name": ""}, "name", "请填写姓名"),
    ({"phone": "12345"}, "phone", "11 位手机号"),
    ({"consent": ""}, "consent", "请勾选同意"),
    ({"company": "x" * 65}, "company", "最多 64 个字"),
    ({"name": "<script>"}, "name", "不允许的字符"),
])
async def test_bad_input_is_explained_and_nothing_stored(stack: Stack, visitor: aiohttp.ClientSession,
                                                         change: dict, field: str, message: str) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    token = await open_form(stack, visitor, code)
    async with visitor.post(f"{stack.bot_url}/l/{code}", data={**GOOD, **change, "csrf": token}) as response:
        assert response.status == 422
        page = await response.text()
    assert re.search(rf'id="error-{field}">[^<]*{message}', page)
    # The tick stays as the visitor left it (it was once cleared whatever was wrong).
    assert ('name="consent" value="yes" checked>' in page) == (field != "consent")
    assert "<script>" not in page.split('id="name"')[1].split(">")[0]  # values are escaped
    assert await leads(stack) == []


async def test_csrf_and_rate_limit_and_duplicates(stack: Stack, visitor: aiohttp.ClientSession) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    async with aiohttp.ClientSession() as stranger:  # a cross-site post has no CSRF cookie
        async with stranger.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "csrf": "guess"}) as response:
            assert response.status == 403
    token = await open_form(stack, visitor, code)
    async with visitor.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "csrf": "wrong"}) as response:
        assert response.status == 403
    statuses = []
    for i in range(6):  # the same phone twice within a day is one lead; the 6th post in 10 min is refused
        async with visitor.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "csrf": token}) as response:
            statuses.append(response.status)
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert len(await leads(stack)) == 1


async def test_unknown_and_ended_links(stack: Stack, visitor: aiohttp.ClientSession) -> None:
    async with visitor.get(f"{stack.bot_url}/l/AAAAAAAAAAA") as response:
        assert response.status == 404
    async with visitor.post(f"{stack.bot_url}/l/nope", data=GOOD) as response:
        assert response.status == 404
    async with stack.bot[DB].session() as session:
        assert await session.scalar(select(func.count()).select_from(Lead)) == 0


async def test_two_submissions_at_the_same_instant_make_one_lead(database_url: str) -> None:
    import asyncio
    from store import leads as lead_store, links as link_store, tasks as task_store
    from store.db import Database
    from store.members import get_member
    from tests.conftest import seed
    await seed(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            p1 = await get_member(session, "p1")
            task = await task_store.create_task(session, title="T", url="https://x.example", creator=None)
            link = await link_store.get_or_create_link(session, task, p1, "link")
        form, _ = lead_store.validate_form(GOOD, consent=True)

        async def submit() -> object:
            async with db.session() as session:
                sharer = await get_member(session, "p1")
                return await lead_store.create_from_form(session, form, sharer=sharer, task_id=task.id, link_id=link.id,
                                                         channel="link", visitor_id="v" * 20,
                                                         book=pool.RuleBook(pool.PoolRules(timezone="UTC")))

        results = await asyncio.gather(*(submit() for _ in range(4)))
        assert sum(r is not None for r in results) == 1
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Lead)) == 1
            assert await session.scalar(select(func.count()).select_from(LeadEvent)) == 2
    finally:
        await db.dispose()


async def test_a_lead_from_someone_who_left_waits_in_the_pool(stack: Stack, visitor: aiohttp.ClientSession) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    async with stack.bot[DB].session() as session:
        from store.members import get_member
        (await get_member(session, "p1")).active = False
    token = await open_form(stack, visitor, code)
    async with visitor.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "csrf": token}) as response:
        assert response.status == 200
    [lead] = await leads(stack)
    assert (lead.status, lead.owner_id, lead.protected_until) == ("new", None, None)
    import asyncio
    await asyncio.sleep(0.3)
    assert len(stack.sim.bot_messages("p1")) == 2  # the card and the link reply; no notice


async def test_one_lead_per_phone_and_task_and_local_day(sqlite_url: str) -> None:
    """The form's one-lead-per-day key follows [server] timezone: 07:30 and 08:30 in Shanghai are one
    day (UTC's days differ), 23:30 and 00:30 the next morning are two (UTC's day is the same)."""
    import time_machine

    from store import leads as lead_store, links as link_store, tasks as task_store
    from store.db import Database
    from store.members import get_member
    from tests.conftest import seed
    await seed(sqlite_url)
    db = Database(sqlite_url)
    book = pool.RuleBook(pool.PoolRules(timezone="Asia/Shanghai"))
    try:
        async with db.session() as session:
            task = await task_store.create_task(session, title="T", url="https://x.example", creator=None)
            link = await link_store.get_or_create_link(session, task, await get_member(session, "p1"), "link")
        form, _ = lead_store.validate_form(GOOD, consent=True)

        async def submit_at(moment: str) -> bool:
            with time_machine.travel(moment, tick=False):
                async with db.session() as session:
                    return await lead_store.create_from_form(
                        session, form, sharer=await get_member(session, "p1"), task_id=task.id, link_id=link.id,
                        channel="link", visitor_id="v" * 20, book=book) is not None

        assert [await submit_at(t) for t in ("2026-12-01T07:30:00+08:00", "2026-12-01T08:30:00+08:00")] == [True, False]
        assert [await submit_at(t) for t in ("2026-12-02T23:30:00+08:00", "2026-12-03T00:30:00+08:00")] == [True, True]
    finally:
        await db.dispose()


async def test_past_the_quota_the_lead_notice_waits_and_follows_when_it_has_room(
        stack: Stack, visitor: aiohttp.ClientSession) -> None:
    """The new lead's notice spends WeCom's daily quota like every message the bot sends by itself:
    past it (less the replies' share) the lead is stored, the notice deferred and counted, and it goes
    out once the quota has room, however long it waited (the salesperson must learn of the lead)."""
    import asyncio
    from datetime import timedelta

    from bot.app import OUTBOX
    from bot.jobs import release_deferred_messages
    from bot.metrics import REGISTRY
    from store import quota as quota_store
    from store.models import OutboxMessage, utcnow
    from tests.test_quota_everywhere import leave_room

    def counted() -> float:
        return REGISTRY.get_sample_value("partnerbot_quota_deferred_total", {"purpose": quota_store.LEAD_NOTICE}) or 0

    await task_for_p1(stack)
    code = await link_code(stack)
    stack.config.wecom.licensed_accounts = 1
    await leave_room(stack, 0)
    before = counted()
    token = await open_form(stack, visitor, code)
    async with visitor.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "csrf": token}) as response:
        assert response.status == 200
    [lead] = await leads(stack)
    async with stack.bot[DB].session() as session:
        [(purpose, status)] = (await session.execute(select(OutboxMessage.purpose, OutboxMessage.status)
                                                     .where(OutboxMessage.dedupe_key == f"newlead:{lead.id}"))).all()
        await session.execute(OutboxMessage.__table__.update().where(OutboxMessage.purpose == purpose)
                              .values(created_at=utcnow() - timedelta(days=3)))  # never too old to tell
    assert (purpose, status) == (quota_store.LEAD_NOTICE, quota_store.DEFERRED)
    await eventually(lambda: asyncio.sleep(0, counted() == before + 1))  # once the form's release found no room
    await asyncio.sleep(0.3)
    assert len(stack.sim.bot_messages("p1")) == 2  # the card and the link reply

    assert await release_deferred_messages(stack.bot[DB], stack.config) == 0  # still no room
    stack.config.wecom.licensed_accounts = 2  # room again (as on the next day in China)
    assert await release_deferred_messages(stack.bot[DB], stack.config) == 1
    stack.bot[OUTBOX].kick()
    [note] = (await stack.sim.wait_for_bot_messages("p1", 3))[2:]
    assert note.body["content"].startswith("🎉 新线索！王女士（华星制造，138****8000）")
