"""A third channel costs one module and one registration: this test's `TestChat` (a platform that
POSTs JSON and takes JSON) is registered only by being passed in the app's channel list, like a line
in bot/channels/__init__.py. Binding, roles, commands, pushes, retries and send limits then work for
it with no other change: identities are rows (store/bindings), not columns."""
from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from aiohttp import web

from bot.channels import CHANNELS
from bot.channels.base import Pipeline, SendingKit, SendLimits
from bot.config import Config
from handlers.replies import Incoming
from tests.conftest import Stack, eventually, make_config, seed, start_stack

NAME = "testchat"


class TestChatChannel:
    __test__ = False  # not a pytest class
    name = NAME

    def __init__(self, per_minute: int = 30) -> None:
        self.per_minute = per_minute
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def enabled(self, config: Config) -> bool:
        return True

    def send_limits(self, config: Config) -> SendLimits:
        return SendLimits(per_minute=self.per_minute, per_hour=100)

    def routes(self, config: Config, pipeline: Pipeline) -> list[web.RouteDef]:
        async def callback(request: web.Request) -> web.Response:
            body = await request.json()
            message = Incoming(NAME, body["user"], "text", text=body["text"])
            stored = await pipeline.inbox().receive(NAME, f"{NAME}:{body['id']}", message)
            return web.json_response({"stored": stored})

        return [web.post("/testchat/callback", callback)]

    def sender(self, config: Config, kit: SendingKit) -> TestChatChannel:
        return self

    async def send(self, recipient: str, payload: dict[str, Any], **_: object) -> None:
        self.sent.append((recipient, payload))

    def texts_to(self, user: str) -> list[str]:
        return [str(p.get("content") or p.get("title") or p.get("kind")) for r, p in self.sent if r == user]


async def say(stack: Stack, channel: TestChatChannel, user: str, text: str, message_id: str) -> bool:
    before = len(channel.texts_to(user))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{stack.bot_url}/testchat/callback",
                             json={"user": user, "text": text, "id": message_id}) as response:
            assert response.status == 200
            stored = (await response.json())["stored"]
    if stored:
        await eventually(lambda: asyncio.sleep(0, len(channel.texts_to(user)) > before))
    return bool(stored)


async def test_a_third_channel_binds_answers_and_receives_pushes(sqlite_url: str) -> None:
    await seed(sqlite_url)
    chat = TestChatChannel()
    stack = await start_stack(make_config(sqlite_url), channels=(*CHANNELS, chat))
    try:
        # A stranger there may only bind (the follower role), and learns nothing else.
        assert await say(stack, chat, "tc-li", "tasks", "1")
        assert chat.texts_to("tc-li")[-1].startswith("Hello! Bind your account first")

        # An admin makes a code in WeCom; sent on the new channel it binds p2 there.
        [reply] = await stack.ask("admin1", "bindcode p2")
        code = re.search(r": ([A-Z2-9]{8}) ", reply).group(1)  # type: ignore[union-attr]
        assert await say(stack, chat, "tc-li", f"bind {code}", "2")
        assert chat.texts_to("tc-li")[-1].startswith("Bound: this account is now Li Na")
        assert not await say(stack, chat, "tc-li", f"bind {code}", "2")  # the platform's retry: stored once

        # The same member on both: commands answer as p2.
        assert await say(stack, chat, "tc-li", "我的", "3")
        assert chat.texts_to("tc-li")[-1].startswith("您近 30 天")

        # Pushes go where the code said: the new channel, not WeCom.
        await stack.ask("mkt1", "newtask Spring | https://brand.example/spring")
        await stack.ask("mkt1", 'broadcast 1 partner:"Blue Ocean" confirm')
        await eventually(lambda: asyncio.sleep(0, any("Spring" in t for t in chat.texts_to("tc-li"))))
        assert not stack.sim.bot_messages("p2")
    finally:
        await stack.stop()


async def test_a_third_channel_has_its_own_send_limits(sqlite_url: str) -> None:
    await seed(sqlite_url)
    chat = TestChatChannel(per_minute=3)
    stack = await start_stack(make_config(sqlite_url), channels=(*CHANNELS, chat))
    try:
        for i in range(3):
            await say(stack, chat, "tc-x", "help", f"h{i}")
        # Three answers in a minute reach the stranger; WeCom members are not held back by it.
        assert len(chat.texts_to("tc-x")) == 3
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{stack.bot_url}/testchat/callback",
                                 json={"user": "tc-x", "text": "help", "id": "h4"}) as response:
                assert (await response.json())["stored"] is True
        await asyncio.sleep(1.0)
        assert len(chat.texts_to("tc-x")) == 3  # the fourth waits for the minute to pass
        for _ in range(4):
            assert (await stack.ask("p1", "帮助"))[0]
    finally:
        await stack.stop()
