"""Faults around the channels, from a review of the WeChat work: a slow store must not cost the passive
reply, odd text must not break its XML, one platform's quota must not pause the other, an expired
token is fetched once by many sends, a database blip while routing a push is retried."""
from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import DB
from bot.channels.member import MemberAddresses
from bot.channels.wechat_api import WeChatError
from bot.channels.wecom_api import WeComClient
from bot.config import OutboxConfig
from bot.pipeline.outbox import OutboxSender
from bot.pipeline.ratelimit import MemberRateLimiter
from bot.pipeline.router import Router
from store import inbox as inbox_store
from store import outbox as outbox_store
from store.db import Database
from store.models import OutboxMessage
from store.redis import SharedKeys
from tests.conftest import ADMIN_TOKEN, FOLLOWERS, make_config, seed, start_stack

P2_WX, _, STRANGER_WX = list(FOLLOWERS)


class Recorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.calls = error, 0

    async def send(self, recipient: str, payload: dict, **_: object) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


async def test_wechat_daily_quota_fails_its_row_and_does_not_pause_wecom(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    wecom = Recorder()
    sender = OutboxSender(db, {"wechat": Recorder(WeChatError(45009, "reach max api daily quota limit")),
                               "wecom": wecom}, OutboxConfig(), {"wecom": MemberRateLimiter(None, "x:", 100, 1000)})
    try:
        async with db.session() as session:
            wx = await outbox_store.add(session, channel="wechat", recipient="oABC",
                                        payload={"kind": "text", "content": "hi"}, claimed=True)
            wc = await outbox_store.add(session, channel="wecom", recipient="p1",
                                        payload={"kind": "text", "content": "hi"}, claimed=True)
        await sender.deliver(wx)
        assert sender._paused_until <= time.monotonic()  # WeChat's quota does not stop WeCom sends
        await sender.deliver(wc)
        assert wecom.calls == 1
        async with db.session() as session:
            row = await session.get(OutboxMessage, wx.id)
            assert row.status == "failed" and "45009" in row.last_error
    finally:
        await db.dispose()


async def test_a_database_blip_while_routing_a_push_is_retried(sqlite_url: str) -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    class Blip:
        def session(self):  # type: ignore[no-untyped-def]
            raise PoolTimeout("QueuePool limit reached")

    db = Database(sqlite_url)
    sender = OutboxSender(db, {"wecom": Recorder()}, OutboxConfig(), {"wecom": MemberRateLimiter(None, "x:", 100, 1000)},
                          MemberAddresses(Blip(), {"wecom"}))  # type: ignore[arg-type]
    try:
        async with db.session() as session:
            row = await outbox_store.add(session, channel="member", recipient="p1",
                                         payload={"kind": "text", "content": "new task"}, claimed=True)
        await sender.deliver(row)
        async with db.session() as session:
            stored = await session.get(OutboxMessage, row.id)
            assert stored.status == "pending" and stored.last_error  # to be tried again
    finally:
        await db.dispose()


async def test_an_expired_token_is_fetched_once_by_many_sends(sqlite_url: str) -> None:
    await seed(sqlite_url)
    stack = await start_stack(make_config(sqlite_url))
    try:
        async with aiohttp.ClientSession() as http:
            client = WeComClient(stack.config.wecom, http, SharedKeys(None, "x:"))
            await client.access_token()
            stack.sim.tokens.clear()  # WeCom forgot it (expired early, or fetched elsewhere)
            await asyncio.gather(*(client.send_message({"touser": "p1", "msgtype": "text", "text": {"content": f"m{i}"}})
                                   for i in range(20)))
        assert stack.sim.api_calls["gettoken"] == 2
        assert len(stack.sim.bot_messages("p1")) == 20
    finally:
        await stack.stop()


async def test_a_slow_store_costs_the_passive_reply_not_the_reply(sqlite_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Storing takes 2.5 s and handling 3.45 s: past WeChat's 5 s had we waited 3.5 s *after* storing.
    The wait is counted from the request, so WeChat gets "success" in time and the reply follows as
    a customer-service message, never recorded as sent without being sent."""
    await seed(sqlite_url)
    stack = await start_stack(make_config(sqlite_url), wechat_mode="safe")
    add, dispatch = inbox_store.add, Router.dispatch

    async def slow_add(*args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(2.5)
        return await add(*args, **kwargs)

    async def slow_dispatch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3.45)
        return await dispatch(self, *args, **kwargs)

    monkeypatch.setattr(inbox_store, "add", slow_add)
    monkeypatch.setattr(Router, "dispatch", slow_dispatch)
    try:
        assert stack.wechat is not None
        delivery = await stack.wechat.send_text(STRANGER_WX, "help")
        assert delivery.attempts == ["200"] and delivery.reply is None
        [reply] = await stack.wechat.wait_for_bot_messages(STRANGER_WX, 1)
        assert reply.body["via"] == "custom" and reply.body["content"].startswith("Hello! Bind")
    finally:
        await stack.stop()


async def test_passive_replies_survive_cdata_terminators(sqlite_url: str) -> None:
    await seed(sqlite_url)
    stack = await start_stack(make_config(sqlite_url), wechat_mode="safe")
    try:
        assert stack.wechat is not None
        [reply] = await stack.ask("admin1", "bindcode p2")
        code = re.search(r": ([A-Z2-9]{8}) ", reply).group(1)  # type: ignore[union-attr]
        await stack.ask_wechat(P2_WX, f"bind {code}")
        delivery = await stack.wechat.send_text(P2_WX, "x]]>y")
        assert delivery.error is None and delivery.reply is not None
        assert "“x]]>y”" in delivery.reply["content"]
    finally:
        await stack.stop()


async def test_binding_code_endpoint_refuses_odd_user_ids(postgres_url: str) -> None:
    await seed(postgres_url)
    config = make_config(postgres_url)
    config.admin.api_token = ADMIN_TOKEN
    stack = await start_stack(config, wechat_mode="safe")
    try:
        async with aiohttp.ClientSession(base_url=stack.bot_url,
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            for userid in ("p2%00", "p2%0A", "a%20b"):
                async with http.post(f"/api/members/{userid}/binding-code") as response:
                    assert response.status == 404, userid
        async with stack.bot[DB].session() as session:
            assert not list(await session.scalars(select(OutboxMessage)))
    finally:
        await stack.stop()


def test_xml_text_keeps_what_xml_can_carry() -> None:
    from bot.channels.wechat import xml_text
    from wechatpy.replies import TextReply
    import xmltodict

    odd = "a]]>b\x01c\x0bd\te\nf 中文 😀"
    rendered = TextReply(source="gh", target="o", content=xml_text(odd)).render()
    assert xmltodict.parse(rendered)["xml"]["Content"] == "a]]>bcd\te\nf 中文 😀"
