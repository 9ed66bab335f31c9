"""The whole loop over real HTTP: simulator → encrypted callback → bot → message/send → simulator."""
import asyncio
import time

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.app import DB
from store.models import InboxMessage, OutboxMessage
from tests.conftest import Stack, eventually


async def counts(stack: Stack) -> tuple[int, int]:
    async with stack.bot[DB].session() as session:
        inbox = await session.scalar(select(func.count()).select_from(InboxMessage))
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage))
    return inbox, outbox


async def test_help_in_english_and_chinese(stack: Stack) -> None:
    [reply] = await stack.ask("p2", "help")
    assert reply.startswith("Hi Li Na (partner staff)") and "help — what you can do here" in reply
    [reply] = await stack.ask("p1", "帮助")
    assert "张伟" in reply and "帮助 — 查看可用命令" in reply
    [reply] = await stack.ask("admin1", "?")
    assert "Ada Admin (admins)" in reply


async def test_unknown_command_suggests_the_closest(stack: Stack) -> None:
    [reply] = await stack.ask("p2", "hepl")
    assert "I don't know “hepl”" in reply and "Did you mean: help" in reply
    [reply] = await stack.ask("p1", "帮主")
    assert "没有“帮主”这个命令" in reply and "您是想用：帮助" in reply
    [reply] = await stack.ask("p1", "xyzzy")
    assert "Send help to see what you can do" in reply


async def test_unregistered_user_gets_their_user_id_and_nothing_else(stack: Stack) -> None:
    [reply] = await stack.ask("stranger", "help")
    assert "stranger" in reply and "ask your admin" in reply
    [reply] = await stack.ask("stranger", "帮助")
    assert "stranger" in reply and "管理员" in reply
    assert "help —" not in reply


@pytest.mark.parametrize("text, expected", [
    ("   ", "Send help"),
    ("x" * 5000, "I don't know “xxxxxxxxxxxxxxxxxxx…”"),
    ("🙂🎉", "I don't know “🙂🎉”"),
    ("'; DROP TABLE members; --", "I don't know “';”"),
    ("help' OR 1=1 --", "I don't know “help'”. Did you mean: help"),
    ("<script>alert(1)</script>", "I don't know"),
])
async def test_odd_input_gets_a_friendly_reply(stack: Stack, text: str, expected: str) -> None:
    [reply] = await stack.ask("p2", text)
    assert expected in reply
    assert len(reply) < 400
    [reply] = await stack.ask("p2", "help")  # and nothing broke
    assert reply.startswith("Hi Li Na")


async def test_card_button_runs_the_same_handler(stack: Stack) -> None:
    delivery = await stack.sim.click("p2", "help", "task-1")
    assert delivery.attempts == ["200"]
    [reply] = [m.body["content"] for m in await stack.sim.wait_for_bot_messages("p2", 1)]
    assert reply.startswith("Hi Li Na")


async def test_same_msgid_three_times_gets_one_reply(stack: Stack) -> None:
    sim = stack.sim
    xml = sim.text_xml("p2", "help", "99887766", int(time.time()))
    deliveries = await asyncio.gather(*(sim.deliver(xml, "99887766") for _ in range(3)))
    assert all(d.attempts == ["200"] for d in deliveries)  # every retry is acknowledged
    await sim.wait_for_bot_messages("p2", 1)
    await asyncio.sleep(0.6)  # give any duplicate time to show up
    assert len(sim.bot_messages("p2")) == 1
    assert await counts(stack) == (1, 1)


async def outbox_row(stack: Stack, status: str) -> OutboxMessage | None:
    async with stack.bot[DB].session() as session:
        return await session.scalar(select(OutboxMessage).where(OutboxMessage.status == status))


async def post_raw(stack: Stack, query: str, body: bytes) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{stack.bot_url}/wecom/callback?{query}", data=body) as response:
            assert response.status != 500
            return response.status


async def test_bad_signature_gets_no_reply_and_stores_nothing(stack: Stack) -> None:
    query, body = stack.sim.encrypt_callback(stack.sim.text_xml("p2", "help", "1", int(time.time())))
    assert await post_raw(stack, query.replace("msg_signature=", "msg_signature=0"), body) == 403
    assert await post_raw(stack, "timestamp=1&nonce=2", body) == 400
    stale, body = stack.sim.encrypt_callback(stack.sim.text_xml("p2", "help", "2", 1), timestamp=int(time.time()) - 3600)
    assert await post_raw(stack, stale, body) == 403
    assert await post_raw(stack, query, b"<xml><Encrypt>nope") == 400
    assert await post_raw(stack, query, b"<x>" * 100_000) == 413
    await asyncio.sleep(0.5)
    assert stack.sim.bot_messages() == []
    assert await counts(stack) == (0, 0)


async def test_url_verification_get(stack: Stack) -> None:
    sim = stack.sim
    ts, nonce = str(int(time.time())), "777"
    echostr = sim.crypto.encrypt_message("echo-123", nonce, ts)
    encrypted = echostr.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    from tests.wecom_vectors import sign
    params = {"msg_signature": sign(stack.config.wecom.token, ts, nonce, encrypted), "timestamp": ts,
              "nonce": nonce, "echostr": encrypted}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.bot_url}/wecom/callback", params=params) as response:
            assert (response.status, await response.text()) == (200, "echo-123")
        async with http.get(f"{stack.bot_url}/wecom/callback", params={**params, "nonce": "778"}) as response:
            assert response.status == 403


async def test_transient_wecom_errors_are_retried_once_delivered(stack: Stack) -> None:
    stack.config.wecom.passive_reply_seconds = 0  # every reply through message/send
    stack.sim.fail_next_sends(-1, 2)  # system busy twice, then fine
    [reply] = await stack.ask("p2", "help")
    assert reply.startswith("Hi Li Na")
    assert stack.sim.api_calls["message/send"] == 3
    row = await eventually(lambda: outbox_row(stack, "sent"))
    assert row.attempts == 3


async def test_a_permanent_wecom_error_is_recorded_not_retried(stack: Stack) -> None:
    stack.config.wecom.passive_reply_seconds = 0  # every reply through message/send
    stack.sim.fail_next_sends(40056, 1)  # invalid agentid: a configuration error
    await stack.sim.send_text("p2", "help")
    row = await eventually(lambda: outbox_row(stack, "failed"))
    assert "40056" in row.last_error
    await asyncio.sleep(0.5)
    assert stack.sim.api_calls["message/send"] == 1


async def test_slow_handling_does_not_delay_the_acknowledgement(sqlite_url: str) -> None:
    """WeCom retries after 5 s without a 200: a slow command holds the answer to the callback no longer
    than the passive-reply budget (well inside the 5 s), and its reply goes through message/send."""
    from handlers.replies import Text
    from handlers.context import EVERY_ROLE, Command, CommandTable
    from tests.conftest import make_config, seed, start_stack

    async def slow(ctx, _args):  # type: ignore[no-untyped-def]
        await asyncio.sleep(6)
        return Text("done at last")

    await seed(sqlite_url)
    stack = await start_stack(make_config(sqlite_url),
                              CommandTable([Command("slow", "慢", EVERY_ROLE, slow, "slow — x", "慢 — x")]))
    try:
        started = time.monotonic()
        delivery = await stack.sim.send_text("p2", "slow")
        assert delivery.attempts == ["200"] and delivery.reply is None
        assert time.monotonic() - started < stack.config.wecom.passive_reply_seconds + 1.0
        [reply] = await stack.sim.wait_for_bot_messages("p2", 1, timeout=15)
        assert reply.body["content"] == "done at last" and "via" not in reply.body
        assert stack.sim.api_calls["message/send"] == 1
    finally:
        for runner in reversed(stack.runners):
            await runner.cleanup()
