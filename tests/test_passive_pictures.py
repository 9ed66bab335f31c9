"""A picture as the first reply (a member's poster) goes back in the callback's own answer when it is
drawn and uploaded within the passive-reply budget, on WeCom and on WeChat: one round trip less and
none of the app's daily message quota. Too late, it goes through message/send instead, once."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import DB
from bot.channels.media import ImageUploads
from store.models import OutboxMessage
from tests.conftest import Stack, make_config, seed, start_stack
from tests.test_links import task_for_p1
from tests.test_wechat_channel import P2_WX, bind


async def poster_rows(stack: Stack) -> list[tuple[str, str]]:
    async with stack.bot[DB].session() as session:
        return [(r.recipient, r.status) for r in await session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "poster").order_by(OutboxMessage.id))]


async def stack_with_task(sqlite_url: str, tmp_path: Path, passive_seconds: float,
                          wechat_mode: str | None = None) -> Stack:
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.posters.cache_dir = str(tmp_path / "posters")
    config.wecom.passive_reply_seconds = config.wechat.passive_reply_seconds = passive_seconds
    stack = await start_stack(config, wechat_mode=wechat_mode) if wechat_mode else await start_stack(config)
    await task_for_p1(stack)
    return stack


async def test_a_poster_goes_back_in_the_callbacks_answer(sqlite_url: str, tmp_path: Path) -> None:
    stack = await stack_with_task(sqlite_url, tmp_path, passive_seconds=4.5)  # ample on a loaded machine
    try:
        sim = stack.sim
        sends = sim.api_calls["message/send"]
        delivery = await sim.send_text("p1", "海报 1")
        assert delivery.reply is not None and delivery.reply["msgtype"] == "image"
        image, note = (await sim.wait_for_bot_messages("p1", 3))[1:]
        assert image.msgtype == "image" and image.body["via"] == "passive"
        assert image.body["media_id"] in sim.media and sim.api_calls["media/upload"] == 1
        assert "专属海报" in note.body["content"] and "via" not in note.body
        await asyncio.sleep(0.3)
        assert sim.api_calls["message/send"] == sends + 1  # the note only
        assert await poster_rows(stack) == [("p1", "answered")]  # off the app's daily quota
    finally:
        await stack.stop()


async def test_a_poster_not_uploaded_in_time_is_sent_as_a_message_once(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = ImageUploads.media_id
    calls: list[float] = []

    async def first_one_slow(self: ImageUploads, reply: Any, message_id: int) -> str:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            await asyncio.sleep(5)  # past the answer's deadline: the answer goes without it
        return await upload(self, reply, message_id)

    monkeypatch.setattr(ImageUploads, "media_id", first_one_slow)
    stack = await stack_with_task(sqlite_url, tmp_path, passive_seconds=3.0)
    try:
        sim = stack.sim
        sends, answers = sim.api_calls["message/send"], sim.api_calls["passive"]
        delivery = await sim.send_text("p1", "海报 1")
        assert delivery.acknowledged and delivery.reply is None
        image, _note = (await sim.wait_for_bot_messages("p1", 3))[1:]
        assert image.msgtype == "image" and "via" not in image.body
        await asyncio.sleep(0.5)
        assert len(calls) == 2  # tried for the answer, then for the message
        assert [m.msgtype for m in sim.bot_messages("p1")].count("image") == 1
        assert sim.api_calls["message/send"] == sends + 2 and sim.api_calls["passive"] == answers
        assert await poster_rows(stack) == [("p1", "sent")]
    finally:
        await stack.stop()


async def test_a_poster_goes_back_in_a_wechat_callbacks_answer(sqlite_url: str, tmp_path: Path) -> None:
    stack = await stack_with_task(sqlite_url, tmp_path, passive_seconds=4.5, wechat_mode="safe")
    try:
        wechat = stack.wechat
        assert wechat is not None
        await bind(stack, P2_WX, "p2")
        await stack.ask("mkt1", 'broadcast 1 partner:"Blue Ocean" confirm')
        delivery = await wechat.send_text(P2_WX, "海报 1")
        assert delivery.reply is not None and delivery.reply["msgtype"] == "image"
        assert delivery.reply["media_id"] in wechat.media
        [image] = [m for m in wechat.bot_messages(P2_WX) if m.msgtype == "image"]
        assert image.body["via"] == "passive"
    finally:
        await stack.stop()
