"""WeCom passive replies: the first reply ready within [wecom] passive_reply_seconds goes back in the
callback's own answer (encrypted, checked and shown by the simulator as WeCom does), the others through
message/send, each exactly once; a tap on a card button that finishes something relabels the card
(update_button in the answer, or message/update_template_card when the answer was too late)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import select

from bot.simulator.wecom_passive import open_passive_reply
from handlers import COMMANDS
from handlers.context import EVERY_ROLE, Command, CommandTable, parse_id
from handlers.replies import Button, ButtonLabel, Card, Text
from store.db import Database
from store.models import Lead, OutboxMessage, utcnow
from tests.conftest import Stack, eventually, make_config, seed, start_stack


async def outbox_rows(stack: Stack) -> list[OutboxMessage]:
    db = Database(stack.config.database.url)
    try:
        async with db.session() as session:
            return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    finally:
        await db.dispose()


async def three(_ctx: Any, _args: Any) -> list[Text]:
    return [Text("one"), Text("two"), Text("three")]


async def slow(_ctx: Any, _args: Any) -> Text:
    await asyncio.sleep(0.6)
    return Text("done at last")


async def lead_card(_ctx: Any, lead_id: int) -> Card:
    """A card with a button that claims a lead (no card of the product has one yet)."""
    return Card(title=f"线索 #{lead_id}", description="可领取", buttons=(Button("领取", f"领取 {lead_id}"),),
                card_id=f"lead-{lead_id}")


async def finish(_ctx: Any, _args: Any) -> list[Any]:
    return [ButtonLabel("已处理"), Text("first"), Text("second")]


TEST_COMMANDS = [
    Command("three", "三条", EVERY_ROLE, three, "three — x", "三条 — x"),
    Command("slow", "慢", EVERY_ROLE, slow, "slow — x", "慢 — x"),
    Command("leadcard", "线索卡", EVERY_ROLE, lead_card, "leadcard 1 — x", "线索卡 1 — x", parse=parse_id),
    Command("finish", "完成", EVERY_ROLE, finish, "finish — x", "完成 — x"),
]


async def start(sqlite_url: str, passive_seconds: float = 3.0) -> Stack:
    await seed(sqlite_url)
    db = Database(sqlite_url)
    async with db.session() as session:
        session.add(Lead(name="赵总", company="华星制造", phone="13800000001", region="上海", industry="制造",
                         source="import"))
    await db.dispose()
    config = make_config(sqlite_url)
    config.wecom.passive_reply_seconds = passive_seconds
    return await start_stack(config, CommandTable([*COMMANDS, *TEST_COMMANDS]))


@pytest.fixture
async def passive_stack(sqlite_url: str):  # type: ignore[no-untyped-def]
    stack = await start(sqlite_url)
    yield stack
    await stack.stop()


async def test_a_command_is_answered_in_the_callbacks_answer(passive_stack: Stack) -> None:
    sim = passive_stack.sim
    delivery = await sim.send_text("p2", "help")
    assert delivery.reply is not None and delivery.reply["msgtype"] == "text"
    [shown] = sim.bot_messages("p2")
    assert shown.body["via"] == "passive" and shown.body["content"].startswith("Hi Li Na")
    await asyncio.sleep(0.5)
    assert sim.api_calls["message/send"] == 0 and sim.api_calls["passive"] == 1
    [row] = await outbox_rows(passive_stack)
    assert (row.status, row.attempts) == ("answered", 0)  # passive: no send through the API, none of its quota


async def test_a_retry_after_a_lost_passive_answer_carries_the_reply(passive_stack: Stack) -> None:
    """The bot answered with the reply but the answer never reached WeCom (an instance killed after its
    commit, a network cut): WeCom's retry is a duplicate, and its answer carries the reply instead."""
    from tests.tcp_proxy import TcpProxy

    sim = passive_stack.sim
    proxy = TcpProxy(int(passive_stack.bot_url.rsplit(":", 1)[1]))
    await proxy.start()
    try:
        sim.callback_url = f"http://127.0.0.1:{proxy.port}/wecom/callback"
        sim.callback_timeout = 1.0
        proxy.lose_answers(1)
        delivery = await sim.send_text("p2", "help")
        assert delivery.attempts == ["timeout", "200"]
        assert delivery.reply is not None and delivery.reply["msgtype"] == "text"
        [shown] = sim.bot_messages("p2")
        assert shown.body["via"] == "passive" and shown.body["content"].startswith("Hi Li Na")
        await asyncio.sleep(0.5)
        assert sim.api_calls["message/send"] == 0
        [row] = await outbox_rows(passive_stack)
        assert (row.status, row.attempts) == ("answered", 0)  # answered twice, delivered once, never sent
        assert row.claimed_at > row.created_at  # the retry's answer took it over (replay_answered)
    finally:
        await proxy.stop()


async def test_a_retry_after_the_answering_instance_died_carries_the_reply(passive_stack: Stack) -> None:
    """Another instance stored the message, committed its reply recorded for the answer, and was
    killed before writing it: WeCom's retry reaches this one, which answers with that reply once the
    dead one's deadline has passed, and only once."""
    from store import inbox as inbox_store
    from store import outbox as outbox_store

    sim = passive_stack.sim
    xml = sim.text_xml("p2", "help", "515151", int(time.time()))
    db = Database(passive_stack.config.database.url)
    try:
        async with db.session() as session:
            inbox_id = await inbox_store.add(session, channel="wecom", dedupe_key="wecom:msg:515151", user_id="p2",
                                             payload={}, claimed_at=utcnow())
            await inbox_store.finish(session, inbox_store.Claim(inbox_id, 1, {}), "done")
            await outbox_store.add(session, channel="wecom", recipient="p2", inbox_id=inbox_id,
                                   payload={"kind": "text", "content": "the dead one's reply"}, sent=True)
    finally:
        await db.dispose()
    started = time.monotonic()
    retry = await sim.deliver(xml, "515151")
    waited = time.monotonic() - started
    assert retry.reply is not None and [m.body["content"] for m in sim.bot_messages("p2")] == ["the dead one's reply"]
    assert waited < passive_stack.config.wecom.passive_reply_seconds  # within its own answer
    await asyncio.sleep(0.3)
    assert len(sim.bot_messages("p2")) == 1 and sim.api_calls["message/send"] == 0


async def test_a_retry_of_a_message_answered_by_message_send_is_only_acknowledged(sqlite_url: str) -> None:
    stack = await start(sqlite_url, passive_seconds=0.2)  # the handler takes 0.6 s: no passive reply
    try:
        xml = stack.sim.text_xml("p2", "slow", "424242", int(time.time()))
        first = await stack.sim.deliver(xml, "424242")
        await stack.sim.wait_for_bot_messages("p2", 1)
        again = await stack.sim.deliver(xml, "424242")
        assert first.reply is None and again.reply is None and again.acknowledged
        await asyncio.sleep(0.5)
        assert len(stack.sim.bot_messages("p2")) == 1 and stack.sim.api_calls["message/send"] == 1
    finally:
        await stack.stop()


async def test_a_passive_reply_is_taken_once_by_the_retry_or_by_its_fallback(database_url: str) -> None:
    """The first answer came too late and its reply goes out as a message (take_answered) while
    WeCom's retry answers with it (replay_answered): whichever comes second finds it gone."""
    from store import inbox as inbox_store
    from store import outbox as outbox_store

    await seed(database_url)
    db = Database(database_url)
    try:
        for first in ("retry", "fallback"):
            key = f"wecom:{first}:1"
            async with db.session() as session:
                inbox_id = await inbox_store.add(session, channel="wecom", dedupe_key=key, user_id="p2",
                                                 payload={}, claimed_at=None)
                picked = await outbox_store.add(session, channel="wecom", recipient="p2", inbox_id=inbox_id,
                                                payload={"kind": "text", "content": "hi"}, sent=True)
            async with db.session() as session:
                if first == "retry":
                    replayed = await outbox_store.replay_answered(session, key)
                    assert replayed is not None
                    assert await outbox_store.take_answered(session, picked) is None
                    # Should the retry's answer fail as well, its own fallback sends it, as a first send.
                    taken = await outbox_store.take_answered(session, replayed)
                    assert taken is not None and (taken.attempts, taken.may_have_been_delivered) == (1, False)
                else:
                    taken = await outbox_store.take_answered(session, picked)
                    assert taken is not None and not taken.recorded_sent
                    assert (taken.attempts, taken.may_have_been_delivered) == (1, False)
                    assert await outbox_store.replay_answered(session, key) is None
    finally:
        await db.dispose()


async def test_the_first_reply_is_passive_the_rest_follow_in_order(passive_stack: Stack) -> None:
    sim = passive_stack.sim
    assert await passive_stack.ask("p2", "three", expect=3) == ["one", "two", "three"]
    vias = [m.body.get("via") for m in sim.bot_messages("p2")]
    assert vias == ["passive", None, None]
    await asyncio.sleep(0.3)
    assert sim.api_calls["message/send"] == 2
    assert [r.status for r in await outbox_rows(passive_stack)] == ["answered", "sent", "sent"]


async def test_a_reply_later_than_the_budget_goes_through_message_send_once(sqlite_url: str) -> None:
    stack = await start(sqlite_url, passive_seconds=0.2)  # the handler takes 0.6 s
    try:
        delivery = await stack.sim.send_text("p2", "slow")
        assert delivery.attempts == ["200"] and delivery.reply is None
        [reply] = await stack.sim.wait_for_bot_messages("p2", 1)
        assert reply.body == {"content": "done at last"}  # not marked passive
        await asyncio.sleep(0.5)
        assert stack.sim.api_calls["message/send"] == 1 and stack.sim.api_calls["passive"] == 0
        [row] = await outbox_rows(stack)
        assert (row.status, row.attempts) == ("sent", 1)
    finally:
        await stack.stop()


async def test_passive_replies_off_by_config(sqlite_url: str) -> None:
    stack = await start(sqlite_url, passive_seconds=0)
    try:
        started = time.monotonic()
        delivery = await stack.sim.send_text("p2", "three")
        assert delivery.reply is None
        assert time.monotonic() - started < 2.0  # answered without waiting for the replies
        replies = await stack.sim.wait_for_bot_messages("p2", 3)
        assert [r.body["content"] for r in replies] == ["one", "two", "three"]
        await asyncio.sleep(0.3)
        assert stack.sim.api_calls["message/send"] == 3 and stack.sim.api_calls["passive"] == 0
    finally:
        await stack.stop()


async def card_for(stack: Stack, userid: str, command: str) -> dict[str, Any]:
    before = len(stack.sim.bot_messages(userid))
    await stack.sim.send_text(userid, command)
    [card] = (await stack.sim.wait_for_bot_messages(userid, before + 1))[before:]
    assert card.msgtype == "template_card" and "via" not in card.body  # no card fits in an answer
    return card.body


async def test_claiming_from_a_card_relabels_its_button_in_the_answer(passive_stack: Stack) -> None:
    sim = passive_stack.sim
    card = await card_for(passive_stack, "p1", "leadcard 1")
    before = len(sim.bot_messages("p1"))
    delivery = await sim.click("p1", "领取 1", card["task_id"])
    assert delivery.reply == {"msgtype": "update_button", "replace_name": "已领取"}
    claimed = (await sim.wait_for_bot_messages("p1", before + 1))[-1]
    assert claimed.body["content"].startswith("线索 #1 已归您") and "via" not in claimed.body
    shown = sim.cards.card("p1", card["task_id"])
    assert shown is not None and shown.body["replace_name"] == "已领取" and shown.revision > shown.id
    await asyncio.sleep(0.3)
    assert sim.api_calls["message/update_template_card"] == 0
    statuses = [(r.kind, r.status) for r in await outbox_rows(passive_stack)]
    assert ("button_label", "answered") in statuses and statuses.count(("text", "sent")) == 1


async def test_a_label_goes_first_wherever_the_handler_put_it(passive_stack: Stack) -> None:
    sim = passive_stack.sim
    card = await card_for(passive_stack, "p2", "leadcard 9")
    delivery = await sim.click("p2", "finish", card["task_id"])
    assert delivery.reply == {"msgtype": "update_button", "replace_name": "已处理"}
    replies = await sim.wait_for_bot_messages("p2", 3)
    assert [r.body["content"] for r in replies[1:]] == ["first", "second"]


async def test_a_typed_claim_has_no_button_to_relabel(passive_stack: Stack) -> None:
    [reply] = await passive_stack.ask("p1", "领取 1")
    assert reply.startswith("线索 #1 已归您")
    await asyncio.sleep(0.3)
    assert [r.kind for r in await outbox_rows(passive_stack)] == ["text"]
    assert passive_stack.sim.api_calls["message/update_template_card"] == 0


async def test_a_refused_claim_leaves_the_button_as_it_was(passive_stack: Stack) -> None:
    sim = passive_stack.sim
    card = await card_for(passive_stack, "p1", "leadcard 7")  # there is no lead #7
    delivery = await sim.click("p1", "领取 7", card["task_id"])
    assert delivery.reply is not None and delivery.reply["msgtype"] == "text"
    assert "replace_name" not in sim.cards.card("p1", card["task_id"]).body  # type: ignore[union-attr]


async def test_a_late_label_goes_through_update_template_card_once(sqlite_url: str) -> None:
    stack = await start(sqlite_url, passive_seconds=0)
    try:
        sim = stack.sim
        card = await card_for(stack, "p1", "leadcard 1")
        delivery = await sim.click("p1", "领取 1", card["task_id"])
        assert delivery.reply is None
        async def relabelled() -> bool | None:
            return sim.cards.card("p1", card["task_id"]).body.get("replace_name") == "已领取" or None  # type: ignore[union-attr]

        await eventually(relabelled)
        await asyncio.sleep(0.3)
        assert sim.api_calls["message/update_template_card"] == 1
        assert [(r.kind, r.status) for r in await outbox_rows(stack)][-2:] == [("text", "sent"), ("button_label", "sent")]
    finally:
        await stack.stop()


async def test_the_simulator_takes_only_encrypted_and_signed_answers(passive_stack: Stack) -> None:
    crypto = passive_stack.sim.crypto
    with pytest.raises(ValueError, match="plaintext"):
        open_passive_reply(b"<xml><ToUserName>p1</ToUserName><MsgType>text</MsgType></xml>", crypto)
    sealed = crypto.encrypt_message("<xml><MsgType>text</MsgType></xml>", "n1", str(int(time.time())))
    tampered = sealed.replace("<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0")
    with pytest.raises(ValueError, match="MsgSignature"):
        open_passive_reply(tampered.encode(), crypto)
    assert open_passive_reply(b"", crypto) is None
    assert open_passive_reply(sealed.encode(), crypto) == {"MsgType": "text"}


async def test_a_reply_picked_for_the_answer_that_cannot_be_written_is_sent_once(
        passive_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The picked reply is recorded sent with the others; if the answer cannot carry it after all,
    it goes through message/send, once."""
    import bot.channels.wecom as wecom

    def broken(*_args: Any) -> str:
        raise RuntimeError("cannot render")

    monkeypatch.setattr(wecom, "passive_xml", broken)
    # Ample time to be picked even on a loaded machine (a reply too late for that is just a message).
    passive_stack.config.wecom.passive_reply_seconds = 4.5
    sim = passive_stack.sim
    delivery = await sim.send_text("p2", "help")
    assert delivery.reply is None and delivery.acknowledged
    [reply] = await sim.wait_for_bot_messages("p2", 1)
    assert "via" not in reply.body
    await asyncio.sleep(0.5)
    assert sim.api_calls["message/send"] == 1 and len(sim.bot_messages("p2")) == 1
    [row] = await outbox_rows(passive_stack)
    assert (row.status, row.attempts) == ("sent", 1)  # taken from the answer, then sent once


@pytest.fixture
async def late_stack(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Every message's transaction ends 0.6 s in, after its 0.3 s budget for a passive reply."""
    from store import inbox as inbox_store

    finish = inbox_store.finish

    async def slow_finish(*args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(0.6)
        return await finish(*args, **kwargs)

    stack = await start(sqlite_url, passive_seconds=0.3)
    monkeypatch.setattr(inbox_store, "finish", slow_finish)
    yield stack
    await stack.stop()


async def test_a_callback_that_stopped_waiting_meanwhile_gets_no_reply_and_the_member_one(late_stack: Stack) -> None:
    """The reply was picked while the callback waited, but the transaction ended after its deadline:
    the answer is plain and the reply goes through message/send, once."""
    delivery = await late_stack.sim.send_text("p2", "help")
    assert delivery.reply is None and delivery.attempts == ["200"]
    [reply] = await late_stack.sim.wait_for_bot_messages("p2", 1)
    assert "via" not in reply.body
    await asyncio.sleep(0.5)
    assert late_stack.sim.api_calls["message/send"] == 1 and len(late_stack.sim.bot_messages("p2")) == 1
    [row] = await outbox_rows(late_stack)
    assert (row.status, row.attempts) == ("sent", 1)  # the answer it missed was no send


async def test_a_reply_taken_from_a_late_answer_is_not_dropped_as_a_duplicate(late_stack: Stack) -> None:
    """The same command twice, each reply too late for its answer: both go through message/send as
    first sends. Sent as retries (WeCom's duplicate check on), WeCom would drop the second as a copy
    of the first, and the member's second question would go unanswered."""
    for count in (1, 2):
        assert (await late_stack.sim.send_text("p2", "help")).reply is None
        await late_stack.sim.wait_for_bot_messages("p2", count)
    assert late_stack.sim.dropped == []

    async def both_sent() -> bool:
        return [row.status for row in await outbox_rows(late_stack)] == ["sent", "sent"]

    await eventually(both_sent)


async def test_a_passive_reply_whose_answer_cannot_be_written_goes_out_as_a_message(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Recorded sent for the answer, but the connection broke while it was written: the platform
    retries, the retry is a duplicate, so the reply must go through the outbox or it is lost."""
    import time

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from bot.channels.passive import Answered, respond
    from store.outbox import Claim

    picked = Claim(1, 0, "wecom", "p1", {"kind": "text", "content": "first"}, answered_at=utcnow())
    other = Claim(2, 1, "wecom", "p1", {"kind": "text", "content": "second"})
    submitted: list[Claim] = []

    async def connection_reset(self, request):  # type: ignore[no-untyped-def]
        raise ConnectionResetError("peer went away")

    async def render(_claim: Claim) -> str:
        return "<xml/>"

    monkeypatch.setattr(web.Response, "prepare", connection_reset)
    with pytest.raises(ConnectionResetError):
        await respond(make_mocked_request("POST", "/wecom/callback"), "wecom", Answered([picked, other], picked),
                      time.monotonic() + 5, submitted.extend, render, "success")
    assert submitted == [picked, other]
