"""Onboarding by invite: partners and codes by admins, join by anyone with a code, every misuse
refused with a reason, and the last place of a code going to exactly one person."""
import asyncio
import io
from datetime import timedelta

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.app import DB
from store import onboarding
from store.db import Database
from store.errors import Refusal
from store.models import Invite, InviteUse, Member, Partner, utcnow
from tests.conftest import Stack, seed


async def invite_code(stack: Stack, partner: str = "星河科技", days: int = 7, places: int = 5) -> str:
    text, poster = await stack.ask("admin1", f"invite {partner} {days} {places}", expect=2)
    async with stack.bot[DB].session() as session:
        code = (await session.scalars(select(Invite.code).order_by(Invite.id.desc()))).first()
    assert f"Invite code for {partner}: {code} — {places} place(s)" in text and f"join {code}" in text
    image = stack.sim.bot_messages("admin1")[-1]
    assert image.msgtype == "image"
    assert Image.open(io.BytesIO(stack.sim.media[image.body["media_id"]][0])).size == (1080, 1920)
    return code


async def test_admin_adds_a_partner_and_a_newcomer_joins_and_gets_the_open_task(stack: Stack) -> None:
    [created] = await stack.ask("admin1", "新伙伴 云帆科技 | 华北 | 制造;零售 | 银牌")
    assert created.startswith("已创建伙伴 云帆科技（银牌）")
    async with stack.bot[DB].session() as session:
        partner = await session.scalar(select(Partner).where(Partner.name == "云帆科技"))
        assert (partner.region, partner.industries, partner.tier) == ("华北", ["制造", "零售"], "silver")
    # A task broadcast to everyone before the newcomer existed.
    await stack.ask("mkt1", "newtask 冬季促销 | https://brand.example/winter")
    await stack.ask("mkt1", "broadcast 1 all confirm")
    code = await invite_code(stack, "云帆科技")

    [before] = await stack.ask("newbie", "任务")
    assert "加入 邀请码" in before and "newbie" in before  # not a member yet: told how to join
    welcome, card = await stack.ask("newbie", f"加入 {code.lower()}", expect=2)
    assert welcome.startswith("欢迎加入 云帆科技 伙伴计划")
    assert stack.sim.bot_messages("newbie")[-1].msgtype == "template_card"
    async with stack.bot[DB].session() as session:
        member = await session.scalar(select(Member).where(Member.userid == "newbie"))
        assert (member.role, member.partner_id, member.region) == ("partner", partner.id, "华北")
        invite = await session.scalar(select(Invite).where(Invite.code == code))
        assert invite.uses == 1
        assert await session.scalar(select(func.count()).select_from(InviteUse)) == 1
    [tasks] = await stack.ask("newbie", "任务")
    assert "冬季促销" in tasks
    [again] = await stack.ask("newbie", f"加入 {code}")
    assert again == "抱歉：您已是 云帆科技 的成员。"


async def test_every_misuse_gets_a_reason(stack: Stack) -> None:
    code = await invite_code(stack, places=1)
    [other] = await stack.ask("p2", f"join {code}")  # p2 is at Blue Ocean
    assert other == "Sorry: you already belong to Blue Ocean; ask an admin to move you."
    [staff] = await stack.ask("mkt1", f"join {code}")
    assert "“join” is for" in staff  # brand staff cannot even use the command
    assert (await stack.ask("guest1", f"join {code}"))[0].startswith("Welcome to 星河科技")
    [used_up] = await stack.ask("guest2", f"join {code}")
    assert used_up == "Sorry: this invite code has been used up; ask for a new one."
    [unknown] = await stack.ask("guest2", "join NOSUCH99")
    assert unknown == "Sorry: there is no invite code NOSUCH99; check it with whoever sent it."
    [empty] = await stack.ask("guest2", "join")
    assert empty.startswith("give the invite code")

    expired = await invite_code(stack)
    async with stack.bot[DB].session() as session:
        (await session.scalar(select(Invite).where(Invite.code == expired))).expires_at = utcnow() - timedelta(days=1)
    assert "expired on" in (await stack.ask("guest2", f"join {expired}"))[0]
    revoked = await invite_code(stack)
    [done] = await stack.ask("admin1", f"revoke {revoked}")
    assert done == f"Invite code {revoked} is revoked (0 of 5 place(s) were used)."
    assert (await stack.ask("guest2", f"join {revoked}"))[0] == "Sorry: this invite code was revoked; ask for a new one."
    async with stack.bot[DB].session() as session:
        assert await session.scalar(select(Member).where(Member.userid == "guest2")) is None  # nothing half-made


@pytest.mark.parametrize("text, expected", [
    ("newpartner", "give the partner's name"),
    ("newpartner 星河科技", "there is already a partner called 星河科技"),
    ("newpartner X | 华东 | 制造 | platinum", "“platinum” is not a tier"),
    ("newpartner " + "长" * 101, "1 to 100 characters"),
    ("newpartner a | b | c | gold | e", "at most four parts"),
    ("invite", "give the partner's name"),
    ("invite Nobody", "there is no partner called Nobody"),
    ("invite 星河科技 0", "valid for 1 to 365 days"),
    ("invite 星河科技 7 0", "used 1 to 10000 times"),
    ("invite 星河科技 9999 5", "valid for 1 to 365 days"),
    # Digits int() refuses ("²" is isdigit()) were an apology; now the reply names the ranges.
    ("invite 星河科技 ²", "“²” is not a number like 7: invite NAME [days 1–365] [places 1–10000]"),
    ("invite 星河科技 7 ²", "“²” is not a number like 7"),
    ("invite 星河科技 五", "“五” is not a number like 7"),
    ("revoke NOSUCH", "there is no invite code NOSUCH"),
])
async def test_bad_admin_input(stack: Stack, text: str, expected: str) -> None:
    [reply] = await stack.ask("admin1", text)
    assert expected in reply
    [refused] = await stack.ask("p1", text.split()[0] + " x")
    assert "is for admins only" in refused


async def test_the_last_place_goes_to_one_of_many_joining_at_once(database_url: str) -> None:
    await seed(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            partner = await session.scalar(select(Partner).where(Partner.name == "星河科技"))
            code = (await onboarding.create_invite(session, partner, days=1, uses=3, created_by=None)).code

        async def attempt(userid: str) -> str:
            async with db.session() as session:
                try:
                    await onboarding.join(session, code, userid, userid)
                    return "joined"
                except Refusal as refusal:
                    return refusal.en

        results = await asyncio.gather(*(attempt(f"crowd{i:02d}") for i in range(20)))
        assert results.count("joined") == 3
        assert all("used up" in r for r in results if r != "joined")
        async with db.session() as session:
            assert await session.scalar(select(Invite.uses).where(Invite.code == code)) == 3
            assert await session.scalar(select(func.count()).select_from(Member).where(Member.userid.like("crowd%"))) == 3
            assert await session.scalar(select(func.count()).select_from(InviteUse)) == 3
    finally:
        await db.dispose()


async def test_the_invite_page_says_what_to_send(stack: Stack) -> None:
    code = await invite_code(stack)
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.get(f"/join/{code}") as r:
            assert r.status == 200 and f"加入 {code}" in await r.text() and "星河科技" in await r.text()
        await stack.ask("admin1", f"revoke {code}")
        async with http.get(f"/join/{code}") as r:
            assert r.status == 410 and "撤销" in await r.text()
        for path in ("/join/NOSUCH22", "/join/%3Cscript%3E", "/join/" + "A" * 300):
            async with http.get(path) as r:
                assert r.status == 404 and "<script>" not in await r.text()


async def test_partners_and_invites_through_the_admin_api(api_stack: Stack) -> None:
    from tests.conftest import admin_http
    stack = api_stack
    async with admin_http(stack) as http:
        async with http.post("/api/partners", json={"name": "云帆", "region": "华北", "industries": ["制造"],
                                                    "tier": "silver", "commission_rate": 0.03}) as r:
            assert r.status == 201
            assert (await r.json())["commission_rate"] == "0.03"
        for body, status, field in (({"name": "云帆"}, 409, "name"), ({"name": "X", "tier": "platinum"}, 422, "tier"),
                                    ({"name": "X", "commission_rate": 1.5}, 422, "commission_rate"),
                                    ({"name": "X", "commission_rate": True}, 422, "commission_rate"),
                                    ({"name": "X", "owner": "y"}, 400, "owner"), ({"name": "X", "industries": "制造"}, 400, "industries"),
                                    ({"name": ""}, 422, "name")):
            async with http.post("/api/partners", json=body) as r:
                assert (r.status, (await r.json()).get("field")) == (status, field), body
        async with http.patch("/api/partners/云帆", json={"commission_rate": None, "tier": "gold"}) as r:
            assert (await r.json())["commission_rate"] is None and (await r.json())["tier"] == "gold"
        async with http.patch("/api/partners/云帆", json={"name": "改名"}) as r:
            assert r.status == 400
        async with http.patch("/api/partners/Nobody", json={"tier": "gold"}) as r:
            assert r.status == 404
        async with http.post("/api/partners/云帆/invites", json={"days": 3, "uses": 2}) as r:
            invite = await r.json()
        assert r.status == 201 and invite["url"].endswith(f"/join/{invite['code']}") and invite["max_uses"] == 2
        async with http.post("/api/partners/云帆/invites", json={"days": 0}) as r:
            assert r.status == 422
        async with http.post(f"/api/invites/{invite['code']}/revoke") as r:
            assert (await r.json())["revoked"] is True
        async with http.get("/api/partners") as r:
            assert {p["name"] for p in (await r.json())["partners"]} == {"星河科技", "Blue Ocean", "云帆"}
    assert (await stack.ask("guest9", f"join {invite['code']}"))[0].endswith("was revoked; ask for a new one.")
    async with stack.bot[DB].session() as session:  # the refused partners were not half-created
        assert await session.scalar(select(func.count()).select_from(Partner)) == 3

