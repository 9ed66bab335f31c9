"""The WeChat Official Account channel end to end, through the simulator's Official Account mode:
binding an openid to a member, then the whole partner flow (tasks, poster, link, pool, claim, me)
from WeChat; the callback's security; the 48-hour window; the menu."""
from __future__ import annotations

import asyncio
import io
import re
import time
from datetime import timedelta

import aiohttp
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import func, select, update

from bot.app import DB
from handlers.menu import MENU, menu_commands
from handlers import command_table
from store.bindings import identity_of
from store.models import BindingCode, InboxMessage, Lead, Member, MemberIdentity, OutboxMessage, Share, utcnow
from tests.conftest import ADMIN_TOKEN, FOLLOWERS, Stack, eventually, make_config, seed, start_stack
from tests.test_pool import add_leads

P2_WX, P1_WX, STRANGER_WX = list(FOLLOWERS)


@pytest.fixture(params=["safe"])
async def wx_stack(request: pytest.FixtureRequest, sqlite_url: str):  # type: ignore[no-untyped-def]
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.admin.api_token = ADMIN_TOKEN
    stack = await start_stack(config, wechat_mode=request.param)
    yield stack
    await stack.stop()


async def code_for(stack: Stack, userid: str) -> str:
    """An admin makes a binding code in WeCom chat for `userid`."""
    [reply] = await stack.ask("admin1", f"bindcode {userid}")
    match = re.search(r": ([A-Z2-9]{8}) ", reply)
    assert match, reply
    return match.group(1)


async def bind(stack: Stack, openid: str, userid: str) -> str:
    [reply] = await stack.ask_wechat(openid, f"bind {await code_for(stack, userid)}")
    return reply


async def openid_of(stack: Stack, userid: str) -> str | None:
    async with stack.bot[DB].session() as session:
        return await identity_of(session, await member(stack, userid), "wechat")


async def member(stack: Stack, userid: str) -> Member:
    async with stack.bot[DB].session() as session:
        found = await session.scalar(select(Member).where(Member.userid == userid))
        assert found is not None
        return found


async def test_an_unbound_follower_learns_how_to_bind_and_nothing_else(wx_stack: Stack) -> None:
    assert wx_stack.wechat is not None
    for text in ("help", "tasks", "pool", "join ABCDEFGH", "claim 1", "newtask X | https://x.example"):
        [reply] = await wx_stack.ask_wechat(STRANGER_WX, text)
        assert reply.startswith("Hello! Bind your account first"), (text, reply)
    [reply] = await wx_stack.ask_wechat(STRANGER_WX, "帮助")
    assert "绑定 绑定码" in reply and STRANGER_WX not in reply
    # A new follower is greeted the same way; the greeting came back in the callback's answer.
    delivery = await wx_stack.wechat.subscribe(STRANGER_WX)
    assert delivery.reply is not None and "绑定" in delivery.reply["content"]
    entry = wx_stack.wechat.bot_messages(STRANGER_WX)[-1]
    assert entry.body["via"] == "passive"
    async with wx_stack.bot[DB].session() as session:
        assert await session.scalar(select(func.count()).select_from(MemberIdentity)) == 0


async def test_a_bound_follower_does_the_whole_partner_flow(wx_stack: Stack) -> None:
    wechat = wx_stack.wechat
    assert wechat is not None
    assert (await bind(wx_stack, P2_WX, "p2")).startswith("Bound: this WeChat is now Li Na. Tasks and notices")
    assert (await member(wx_stack, "p2")).push_channel == "wechat"

    # A broadcast reaches p2 on WeChat (not WeCom), its buttons as a message menu.
    await wx_stack.ask("mkt1", "newtask Spring | https://brand.example/spring")
    await wx_stack.ask("mkt1", 'broadcast 1 partner:"Blue Ocean" confirm')
    [card] = (await wechat.wait_for_bot_messages(P2_WX, 2))[1:]
    assert card.msgtype == "msgmenu" and card.body["via"] == "custom"
    assert "新任务 #1：Spring" in card.body["head_content"]
    # WeChat lists the commands themselves, not buttons: the card says so (it once said "点下方按钮").
    assert "点下方指令" in card.body["head_content"] and "按钮" not in card.body["head_content"]
    assert [i["content"] for i in card.body["list"]] == ["海报 1", "链接 1", "任务 1"]
    assert not wx_stack.sim.bot_messages("p2")

    [tasks] = await wx_stack.ask_wechat(P2_WX, "任务")
    assert "#1 Spring" in tasks

    # Tapping the menu item sends its text: the poster (a customer-service image) and its note.
    image, note = await wx_stack.ask_wechat(P2_WX, card.body["list"][0]["content"], expect=2)
    poster = Image.open(io.BytesIO(wechat.media[[e for e in wechat.bot_messages(P2_WX) if e.msgtype == "image"][0]
                                                .body["media_id"]][0]))
    [qr] = zxingcpp.read_barcodes(poster)
    assert qr.text.startswith(f"{wx_stack.config.server.public_base_url}/t/") and "专属海报" in note

    # The menu's "my link" has no task number: the newest task.
    [link] = await wx_stack.ask_wechat(P2_WX, "链接")
    assert "任务 #1 的专属链接" in link and "/t/" in link
    async with wx_stack.bot[DB].session() as session:
        p2 = await session.scalar(select(Member).where(Member.userid == "p2"))
        assert sorted(s.channel for s in await session.scalars(select(Share).where(Share.member_id == p2.id))) \
            == ["link", "poster"]

    # The pool and a claim.
    lead_ids = await add_leads(wx_stack.config.database.url)
    [pool] = await wx_stack.ask_wechat(P2_WX, "线索池")
    assert f"#{lead_ids[3]}" in pool and "13800000004" not in pool
    [claimed] = await wx_stack.ask_wechat(P2_WX, f"领取 {lead_ids[3]}")
    assert "13800000004" in claimed
    async with wx_stack.bot[DB].session() as session:
        lead = await session.get(Lead, lead_ids[3])
        assert lead is not None and lead.owner_id == p2.id

    # A menu click runs its key's command.
    before = len(wechat.bot_messages(P2_WX))
    await wechat.click_menu(P2_WX, "我的")
    [me] = [m.body["content"] for m in (await wechat.wait_for_bot_messages(P2_WX, before + 1))[before:]]
    assert me.startswith("您近 30 天：分享 2 次")

    # WeCom still works for the same person, and it is the same member.
    [wecom_me] = await wx_stack.ask("p2", "我的")
    assert wecom_me.startswith("您近 30 天：分享 2 次")

    # Where pushes go can be changed, from either channel.
    [where] = await wx_stack.ask("p2", "通知")
    assert where.startswith("您的任务和通知发送到微信公众号")
    [moved] = await wx_stack.ask_wechat(P2_WX, "notify wecom")
    assert moved.startswith("Your tasks and notices go to WeCom")
    assert (await member(wx_stack, "p2")).push_channel == "wecom"
    [bad] = await wx_stack.ask("p2", "通知 邮件")
    assert "不是渠道" in bad
    [refused] = await wx_stack.ask("p1", "notify wechat")
    assert refused.startswith("Sorry: bind your WeChat first")
    await wx_stack.ask_wechat(P2_WX, "通知 微信")
    assert (await member(wx_stack, "p2")).push_channel == "wechat"

    [unbound] = await wx_stack.ask_wechat(P2_WX, "解绑")
    assert "已解除微信绑定" in unbound
    assert (await member(wx_stack, "p2")).push_channel == "wecom"
    [after] = await wx_stack.ask_wechat(P2_WX, "任务")
    assert "绑定" in after and "Spring" not in after


async def test_someone_outside_wecom_cannot_cut_themselves_off(wx_stack: Stack) -> None:
    await bind(wx_stack, P2_WX, "p2")  # p2 has never written in WeCom
    for text in ("解绑", "notify wecom"):
        [refused] = await wx_stack.ask_wechat(P2_WX, text)
        assert "never used the bot in WeCom" in refused or "从未在企业微信" in refused, refused
    assert await openid_of(wx_stack, "p2") == P2_WX and (await member(wx_stack, "p2")).push_channel == "wechat"


async def test_binding_misuse_is_refused_and_changes_nothing(wx_stack: Stack) -> None:
    # Unknown code; a code sent in WeCom instead of WeChat.
    [reply] = await wx_stack.ask_wechat(STRANGER_WX, "绑定 ZZZZZZZZ")
    assert reply == "抱歉：没有绑定码 ZZZZZZZZ，请与发码人核对。"
    code = await code_for(wx_stack, "p2")
    [reply] = await wx_stack.ask("p1", f"bind {code}")
    assert "WeChat official account" in reply

    # Used once; used again by someone else.
    [ok] = await wx_stack.ask_wechat(P2_WX, f"bind {code}")
    assert ok.startswith("Bound")
    [reused] = await wx_stack.ask_wechat(STRANGER_WX, f"bind {code}")
    assert reused == "Sorry: this binding code has already been used; ask your admin for a new one."

    # Someone already bound tries another member's code: refused, and the code stays unused.
    other = await code_for(wx_stack, "p1")
    [theirs] = await wx_stack.ask_wechat(P2_WX, f"绑定 {other}")
    assert "此微信已绑定 Li Na" in theirs
    async with wx_stack.bot[DB].session() as session:
        row = await session.scalar(select(BindingCode).where(BindingCode.code == other))
        assert row is not None and row.used_at is None
        # Expired.
        await session.execute(update(BindingCode).where(BindingCode.code == other)
                              .values(expires_at=utcnow() - timedelta(minutes=1)))
    [expired] = await wx_stack.ask_wechat(P1_WX, f"bind {other}")
    assert expired.startswith("Sorry: this binding code expired at")
    assert await openid_of(wx_stack, "p1") is None
    assert await openid_of(wx_stack, "p2") == P2_WX

    # Partners cannot make codes for others; no argument or a bad user id is answered.
    [refused] = await wx_stack.ask("p1", "绑定码 p2")
    assert refused == "抱歉：只有管理员可以为他人生成绑定码。"
    [bad] = await wx_stack.ask("admin1", "bindcode no/such")
    assert bad.startswith("“no/such” is not a user id")
    [missing] = await wx_stack.ask("admin1", "bindcode ghost")
    assert missing.startswith("there is no active member ghost")
    [own] = await wx_stack.ask("p1", "绑定码")
    assert re.search(r"绑定码：[A-Z2-9]{8}（仅可使用一次", own)
    [bind_bad] = await wx_stack.ask_wechat(STRANGER_WX, "绑定")
    assert bind_bad.startswith("Hello! Bind") or "请写绑定码" in bind_bad


async def test_callback_security(wx_stack: Stack) -> None:
    wechat = wx_stack.wechat
    assert wechat is not None
    url = f"{wx_stack.bot_url}/wechat/callback"
    plaintext = wechat.text_xml(STRANGER_WX, "help", "990001", int(time.time()))
    async with aiohttp.ClientSession() as http:
        query, body = wechat.encrypt_callback(plaintext)
        bad_signature = re.sub(r"signature=[0-9a-f]{40}", "signature=" + "0" * 40, query, count=1)
        async with http.post(f"{url}?{bad_signature}", data=body) as response:
            assert response.status == 403
        tampered = re.sub(r"msg_signature=[0-9a-f]{40}", "msg_signature=" + "1" * 40, query)
        async with http.post(f"{url}?{tampered}", data=body) as response:
            assert response.status == 403
        stale_query, stale_body = wechat.encrypt_callback(plaintext, timestamp=int(time.time()) - 3600)
        async with http.post(f"{url}?{stale_query}", data=stale_body) as response:
            assert response.status == 403
        # The same signed query with the plaintext body: this account is in safe mode.
        plain_query = re.sub(r"&encrypt_type=aes&msg_signature=[0-9a-f]{40}", "", query)
        async with http.post(f"{url}?{plain_query}", data=plaintext.encode()) as response:
            assert response.status == 403
        async with http.post(f"{url}?{query}", data=b"<xml><Encrypt>") as response:
            assert response.status == 400
        async with http.post(f"{url}?{query}", data=b"x" * (wx_stack.config.server.max_body_bytes + 1)) as response:
            assert response.status == 413
        async with http.get(url, params={"echostr": "x"}) as response:
            assert response.status == 400
    async with wx_stack.bot[DB].session() as session:
        assert await session.scalar(select(func.count()).select_from(InboxMessage)) == 0

    # The same MsgId three times, one after the other. WeChat retries only an answer it did not get, so
    # each retry's answer carries the same reply: stored and processed once, never sent as a message too.
    assert [(await wechat.deliver(plaintext, "990001")).attempts for _ in range(3)] == [["200"]] * 3
    async with wx_stack.bot[DB].session() as session:
        assert await session.scalar(select(func.count()).select_from(InboxMessage)) == 1
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    answers = wechat.bot_messages(STRANGER_WX)
    assert len(answers) == 3 and all(m.body == answers[0].body and m.body["via"] == "passive" for m in answers)
    assert wechat.api_calls["custom/send"] == 0


@pytest.mark.parametrize("mode", ["plain", "compatible"])
async def test_plain_and_compatible_modes(sqlite_url: str, mode: str) -> None:
    await seed(sqlite_url)
    stack = await start_stack(make_config(sqlite_url), wechat_mode=mode)
    try:
        assert stack.wechat is not None and await stack.wechat.verify_url()
        assert (await bind(stack, P2_WX, "p2")).startswith("Bound")
        [reply] = await stack.ask_wechat(P2_WX, "帮助")
        assert reply.startswith("Li Na，您好（合作伙伴销售）")
        assert stack.wechat.bot_messages(P2_WX)[-1].body["via"] == "passive"
    finally:
        await stack.stop()


async def test_late_replies_go_as_customer_service_messages(sqlite_url: str) -> None:
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.wechat.passive_reply_seconds = 0  # nothing is ever ready in time
    stack = await start_stack(config, wechat_mode="safe")
    try:
        assert stack.wechat is not None
        delivery = await stack.wechat.send_text(STRANGER_WX, "help")
        assert delivery.reply is None
        [entry] = await stack.wechat.wait_for_bot_messages(STRANGER_WX, 1)
        assert entry.body["via"] == "custom" and entry.body["content"].startswith("Hello! Bind")
    finally:
        await stack.stop()


async def test_outside_the_48_hour_window_pushes_wait_for_the_follower(wx_stack: Stack) -> None:
    wechat = wx_stack.wechat
    assert wechat is not None
    await bind(wx_stack, P2_WX, "p2")
    wechat.last_interaction[P2_WX] = time.time() - 49 * 3600
    await wx_stack.ask("mkt1", "newtask Spring | https://brand.example/spring")
    await wx_stack.ask("mkt1", 'broadcast 1 partner:"Blue Ocean" confirm')

    def card_is(status: str):  # type: ignore[no-untyped-def]
        async def check() -> bool:
            async with wx_stack.bot[DB].session() as session:
                return await session.scalar(select(OutboxMessage.status).where(OutboxMessage.task_id == 1)) == status
        return check

    await eventually(card_is("waiting"))
    assert [e.msgtype for e in wechat.bot_messages(P2_WX)] == ["text"]  # only the binding reply
    # The marketer sees it in the task's progress, and the operator in /metrics.
    [progress] = await wx_stack.ask("mkt1", "任务 1")
    assert "1 张等待微信关注者发消息后送达" in progress
    async with aiohttp.ClientSession() as http, http.get(f"{wx_stack.bot_url}/metrics",
                                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert "partnerbot_outbox_parked 1.0" in await r.text()
    # The follower writes: the answer comes back, and the task card that waited.
    await wx_stack.ask_wechat(P2_WX, "帮助", expect=2)
    assert sorted(e.msgtype for e in wechat.bot_messages(P2_WX)[-2:]) == ["msgmenu", "text"]
    await eventually(card_is("sent"))

    # A card that waited longer than [wechat] waiting_days is dropped when the follower writes.
    wechat.last_interaction[P2_WX] = time.time() - 49 * 3600
    await wx_stack.ask("mkt1", "newtask Autumn | https://brand.example/autumn")
    await wx_stack.ask("mkt1", 'broadcast 2 partner:"Blue Ocean" confirm')

    async def parked_second() -> bool:
        async with wx_stack.bot[DB].session() as session:
            return await session.scalar(select(OutboxMessage.status).where(OutboxMessage.task_id == 2)) == "waiting"
    await eventually(parked_second)
    async with wx_stack.bot[DB].session() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.task_id == 2)
                              .values(created_at=utcnow() - timedelta(days=8)))
    before = len(wechat.bot_messages(P2_WX))
    await wx_stack.ask_wechat(P2_WX, "帮助")
    await asyncio.sleep(1.0)
    assert len(wechat.bot_messages(P2_WX)) == before + 1  # the answer only
    async with wx_stack.bot[DB].session() as session:
        row = await session.scalar(select(OutboxMessage).where(OutboxMessage.task_id == 2))
        assert row.status == "failed" and "did not write again" in row.last_error


async def test_admin_api_binding_code(wx_stack: Stack) -> None:
    async with aiohttp.ClientSession(base_url=wx_stack.bot_url) as http:
        async with http.post("/api/members/p2/binding-code") as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with http.post("/api/members/p2/binding-code", json={"hours": 2}, headers=headers) as response:
            assert response.status == 201
            code = (await response.json())["code"]
        for body, status in (({"hours": 0}, 400), ({"hours": "2"}, 400), ([1], 400)):
            async with http.post("/api/members/p2/binding-code", json=body, headers=headers) as response:
                assert response.status == status, body
        async with http.post("/api/members/p2/binding-code", data=b"{", headers=headers) as response:
            assert response.status == 400
        async with http.post("/api/members/ghost/binding-code", headers=headers) as response:
            assert response.status == 404
    assert (await wx_stack.ask_wechat(P2_WX, f"绑定 {code}"))[0].startswith("绑定成功")


async def test_menu_command_installs_a_menu_whose_buttons_are_commands(wx_stack: Stack) -> None:
    from bot.cli import install_menu

    assert wx_stack.wechat is not None
    await install_menu(wx_stack.config)
    assert wx_stack.wechat.menu is not None
    assert [b["name"] for b in wx_stack.wechat.menu["button"]] == [b["name"] for b in MENU["button"]]
    table = command_table()
    for line in menu_commands():
        word, _ = table.split(line)
        assert table.lookup(word) is not None, line


async def test_one_code_binds_one_openid_when_several_race(database_url: str) -> None:
    from store import bindings
    from store.db import Database
    from store.errors import Refusal

    await seed(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            p2 = await session.scalar(select(Member).where(Member.userid == "p2"))
            code = (await bindings.issue_code(session, p2, hours=1, by=None, push_there=True)).code

        async def attempt(i: int) -> bool:
            try:
                async with db.session() as session:
                    await bindings.bind(session, code, "wechat", f"oRace{i:023d}")
                return True
            except Refusal:
                return False

        won = await asyncio.gather(*(attempt(i) for i in range(8)))
        assert sum(won) == 1
        async with db.session() as session:
            p2 = await session.scalar(select(Member).where(Member.userid == "p2"))
            row = await session.scalar(select(BindingCode).where(BindingCode.code == code))
            assert await bindings.identity_of(session, p2, "wechat") == row.used_by == f"oRace{won.index(True):023d}"
    finally:
        await db.dispose()


async def test_the_wechat_of_someone_who_left_can_be_bound_again(sqlite_url: str) -> None:
    from store import bindings
    from store.db import Database

    await seed(sqlite_url)
    db = Database(sqlite_url)
    try:
        async with db.session() as session:
            p1, p2 = [await session.scalar(select(Member).where(Member.userid == u)) for u in ("p1", "p2")]
            await bindings.bind(session, (await bindings.issue_code(session, p1, hours=1, by=None,
                                                                    push_there=True)).code, "wechat", P1_WX)
            p1.active = False  # p1 left the partner
            member = await bindings.bind(session, (await bindings.issue_code(session, p2, hours=1, by=None,
                                                                             push_there=False)).code, "wechat", P1_WX)
            assert member.userid == "p2" and await bindings.identity_of(session, p1, "wechat") is None
            assert p1.push_channel == "wecom"
            assert await bindings.member_for(session, "wechat", P1_WX) == p2
    finally:
        await db.dispose()
