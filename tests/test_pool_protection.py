"""protect_days (DESIGN §5): a lead from a partner's own link stays with the member who shared it
until `protected_until`, through recycling and claiming; a voluntary return or an admin's move ends it."""
from datetime import timedelta
from zoneinfo import ZoneInfo

import aiohttp
from sqlalchemy import select

from bot.app import DB
from bot.jobs import recycle_idle_leads
from store import pool
from store.members import MemberRow, get_member
from store.models import Lead, LeadEvent, utcnow
from tests.conftest import Stack, admin_http, eventually, seed
from tests.test_landing import GOOD, lead_notice_reached, open_form
from tests.test_links import BROWSER, link_code, task_for_p1

COLLEAGUE = MemberRow(0, "p3", "王芳", "partner", "星河科技", "华东", ())  # p1's colleague at 星河科技
PHONE = "13800138000"  # GOOD's phone, as stored


async def shared_lead(stack: Stack) -> int:
    """A visitor fills p1's form: the lead is p1's, protected for [pool] protect_days (14)."""
    await seed(stack.config.database.url, [COLLEAGUE])
    await task_for_p1(stack)
    code = await link_code(stack)
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as visitor:
        token = await open_form(stack, visitor, code)
        async with visitor.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "csrf": token}) as response:
            assert response.status == 200
    await lead_notice_reached(stack, "p1")
    async with stack.bot[DB].session() as session:
        [lead] = await session.scalars(select(Lead))
        assert lead.protected_until is not None and lead.protected_until > utcnow() + timedelta(days=13)
    return lead.id


async def set_lead(stack: Stack, lead_id: int, **values: object) -> None:
    async with stack.bot[DB].session() as session:
        lead = await session.get(Lead, lead_id)
        for name, value in values.items():
            setattr(lead, name, value)


async def lead_row(stack: Stack, lead_id: int) -> Lead:
    async with stack.bot[DB].session() as session:
        return await session.get(Lead, lead_id)


def texts(stack: Stack, userid: str, words: str) -> list[str]:
    return [m.body.get("content", "") for m in stack.sim.bot_messages(userid) if words in m.body.get("content", "")]


def arrived(stack: Stack, userid: str, words: str):  # type: ignore[no-untyped-def]
    async def check() -> list[str]:
        return texts(stack, userid, words)
    return check


def local(stack: Stack, when) -> str:  # type: ignore[no-untyped-def]
    return when.astimezone(ZoneInfo(stack.config.server.timezone)).strftime("%Y-%m-%d %H:%M")


async def test_an_idle_protected_lead_is_not_recycled_until_its_protection_ends(stack: Stack) -> None:
    s, lead_id = stack, await shared_lead(stack)
    async with s.bot[DB].session() as session:
        p1 = await get_member(session, "p1")
    # Quiet for 8 days (past idle_days, 7) but protected for 6 more (protect_days, 14).
    await set_lead(s, lead_id, created_at=utcnow() - timedelta(days=8), protected_until=utcnow() + timedelta(days=6))
    assert await recycle_idle_leads(s.bot[DB], s.config) == 0
    lead = await lead_row(s, lead_id)
    assert (lead.owner_id, lead.status) == (p1.id, "claimed")
    [reply] = await s.ask("p3", f"claim {lead_id}")
    assert reply == f"Sorry: lead #{lead_id} is held by someone else."
    [reply] = await s.ask("p3", "pool")
    assert PHONE not in reply and f"#{lead_id}" not in reply
    # The day before the protection ends, the sharer gets the usual warning (once), not before.
    assert texts(s, "p1", "明天将因未跟进被收回") == []
    await set_lead(s, lead_id, protected_until=utcnow() + timedelta(hours=12))
    assert await recycle_idle_leads(s.bot[DB], s.config) == 0
    assert await recycle_idle_leads(s.bot[DB], s.config) == 0
    [warning] = await eventually(arrived(s, "p1", "明天将因未跟进被收回"))
    assert warning.startswith(f"⚠️ 线索 #{lead_id}（王女士）明天将因未跟进被收回。")
    # Protection over and still no follow-up: back to 星河科技's pool like any idle lead.
    await set_lead(s, lead_id, protected_until=utcnow() - timedelta(minutes=1))
    assert await recycle_idle_leads(s.bot[DB], s.config) == 1
    await eventually(arrived(s, "p1", "已收回线索池"))
    [reply] = await s.ask("p3", f"claim {lead_id}")
    assert reply.startswith(f"Lead #{lead_id} is yours") and PHONE in reply
    assert len(texts(s, "p1", "明天将因未跟进被收回")) == 1


async def test_recycling_checks_protection_in_its_own_update(stack: Stack) -> None:
    """A job that read the lead before its protection was known still cannot recycle it: the
    conditional UPDATE itself refuses, as it does for a lead followed up meanwhile."""
    s, lead_id = stack, await shared_lead(stack)
    await set_lead(s, lead_id, created_at=utcnow() - timedelta(days=8))
    lead = await lead_row(s, lead_id)
    async with s.bot[DB].session() as session:
        assert await pool.recycle(session, lead, utcnow() - timedelta(days=7)) is False
    assert (await lead_row(s, lead_id)).owner_id == lead.owner_id


async def test_a_protected_lead_in_the_pool_is_only_for_its_sharer(stack: Stack) -> None:
    s, lead_id = stack, await shared_lead(stack)
    # In the pool with its protection still running (as an admin's move to a pool used to leave it).
    until = utcnow() + timedelta(days=5)
    await set_lead(s, lead_id, owner_id=None, status="new", pool_partner_id=(await lead_row(s, lead_id)).partner_id,
                   protected_until=until)
    [reply] = await s.ask("p3", f"领取 {lead_id}")
    assert reply == f"抱歉：线索 #{lead_id} 受保护至 {local(s, until)}，仅原分享人可跟进。"
    [reply] = await s.ask("p3", f"claim {lead_id}")
    assert reply == f"Sorry: lead #{lead_id} is protected for its sharer until {local(s, until)}; only they may follow it up."
    [reply] = await s.ask("p3", "pool")
    assert f"#{lead_id}" not in reply
    [reply] = await s.ask("p1", f"claim {lead_id}")  # the sharer may take it back
    assert reply.startswith(f"Lead #{lead_id} is yours")


async def test_a_return_gives_up_protection(stack: Stack) -> None:
    s, lead_id = stack, await shared_lead(stack)
    until = local(s, (await lead_row(s, lead_id)).protected_until)
    [reply] = await s.ask("p1", f"退回 {lead_id} 客户要找本地服务商")
    assert reply == f"线索 #{lead_id} 已退回线索池。退回即放弃保护期（原保护至 {until}），同事现在可以领取。"
    assert (await lead_row(s, lead_id)).protected_until is None
    [reply] = await s.ask("p3", f"claim {lead_id}")
    assert reply.startswith(f"Lead #{lead_id} is yours")


async def test_an_admin_move_overrides_protection(api_stack: Stack) -> None:
    s, lead_id = api_stack, await shared_lead(api_stack)
    async with admin_http(s) as http, http.post(f"/api/leads/{lead_id}/assign", json={"pool": "星河科技"}) as r:
        assert r.status == 200
        history = (await r.json())["history"]
    assert "protection" in history[-1]["note"]
    assert (await lead_row(s, lead_id)).protected_until is None
    [reply] = await s.ask("p3", f"claim {lead_id}")
    assert reply.startswith(f"Lead #{lead_id} is yours")
    async with s.bot[DB].session() as session:
        kinds = [e.kind for e in await session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead_id)
                                                          .order_by(LeadEvent.id))]
    assert kinds == ["created", "assigned", "returned", "assigned", "claimed"]
