"""`forward N` / `转发 N` end to end through the simulator (issue 16, "Forward to my customers"): the
member's copy becomes a WeCom customer mass message with the member as sender and their tracked link
attached; once they confirm it in WeCom, the periodic job reads back how many customers it reached and
the figures show it. Members without customer-contact permission, or without customers, get their copy
and a note; bad input gets the same answers as `content N`."""
import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.app import DB, INBOX
from bot.channels.customers import WeComCustomers
from bot.channels.wecom_api import WeComClient, WeComError
from bot.forwarding import send_forwards
from bot.jobs import read_forward_results
from bot.pipeline import inbox as inbox_module
from store.models import ContentForward, Share
from store.redis import SharedKeys
from tests.conftest import Stack
from tests.test_content import add, code_in


async def run_job(stack: Stack, send: bool = False) -> int:
    async with aiohttp.ClientSession() as http:
        customers = WeComCustomers(WeComClient(stack.config.wecom, http, SharedKeys(None, "fwd:")))
        if send:
            return await send_forwards(stack.bot[DB], customers)
        return await read_forward_results(stack.bot[DB], customers)


async def forwards_in_db(stack: Stack) -> list[ContentForward]:
    async with stack.bot[DB].session() as session:
        return list(await session.scalars(select(ContentForward).order_by(ContentForward.id)))


async def test_forward_creates_the_mass_message_and_the_reached_count_comes_back(stack: Stack) -> None:
    item = await add(stack, "newcontent 2026 whitepaper | https://brand.example/wp | case")
    stack.sim.customers.give("p1", 3)
    [reply] = await stack.ask("p1", f"forward {item}")
    assert reply.startswith(f"Content #{item} “2026 whitepaper” is ready to go to your 3 WeCom customer(s)")
    assert "Customer mass messages (客户群发)" in reply
    [message] = stack.sim.customers.sent_by("p1")
    assert message.sender == "p1" and len(message.results) == 3
    [url] = message.link_urls
    assert url == f"{stack.config.server.public_base_url}/t/{code_in(reply)}" and url in reply
    assert message.attachments[0]["link"]["title"] == "2026 whitepaper"
    # While WeCom still dispatches it (41063) the job leaves it for the next run.
    stack.sim.customers.dispatch_seconds = 3600
    assert await run_job(stack) == 0
    stack.sim.customers.dispatch_seconds = 0
    # Nothing reached anyone before the member confirms.
    assert await run_job(stack) == 1
    async with stack.bot[DB].session() as session:
        [forward] = list(await session.scalars(select(ContentForward)))
        assert (forward.msgid, forward.reachable, forward.reached) == (message.msgid, 3, 0)
    [details] = await stack.ask("mkt1", f"content {item}")
    assert "Forwarded in WeCom: 1 customer mass message(s), reaching 0 customer(s)." in details

    assert stack.sim.customers.confirm(message.msgid, reached=2) == 2  # one customer is no longer a friend
    await run_job(stack)
    async with stack.bot[DB].session() as session:
        assert (await session.get(ContentForward, forward.id)).reached == 2
        # The copy taken counted one share, whatever was forwarded.
        assert len(list(await session.scalars(select(Share).where(Share.content_id == item)))) == 1
    [details] = await stack.ask("mkt1", f"content {item}")
    assert "Forwarded in WeCom: 1 customer mass message(s), reaching 2 customer(s)." in details
    assert "1 member(s) took their copy." in details and "Moments" not in details
    [mine] = await stack.ask("p1", "我的")
    assert "企业微信转发：客户群发 1 次，已送达 2 位客户。" in mine

    # Forwarding again in Chinese: a second mass message, the same link, still one share.
    [again] = await stack.ask("p1", f"转发 {item}")
    assert again.startswith(f"素材 #{item}“2026 whitepaper”已生成客户群发") and "3 位客户" in again
    assert code_in(again) == code_in(reply) and len(stack.sim.customers.sent_by("p1")) == 2


async def test_a_talk_script_goes_out_filled_in(stack: Stack) -> None:
    item = await add(stack, "newscript Intro | 您好，我是{公司}的{姓名}，资料见 {链接}")
    stack.sim.customers.give("p1", 1)
    [reply] = await stack.ask("p1", f"转发 {item}")
    [message] = stack.sim.customers.sent_by("p1")
    [url] = message.link_urls
    assert message.text == f"您好，我是星河科技的张伟，资料见 {url}" and code_in(url) == code_in(reply)


async def test_without_permission_or_customers_the_member_gets_their_copy_and_a_note(stack: Stack) -> None:
    item = await add(stack, "newcontent Case study | https://brand.example/case")
    stack.sim.customers.no_permission.add("p2")
    _card, text, note = await stack.ask("p2", f"forward {item}", expect=3)
    assert f"Your own link for content #{item}" in text and "/t/" in text
    assert note.startswith("It could not go to your customers from here: your WeCom account has no customer-contact")
    _card, _text, note_zh = await stack.ask("p1", f"转发 {item}", expect=3)  # permission, but no customers
    assert note_zh == "您在企业微信中还没有可群发的客户：请手动转发上面的专属版本。"
    stack.sim.customers.api_allowed = False  # the app is not on WeCom's customer-contact API list
    *_, note_app = await stack.ask("p1", f"forward {item}", expect=3)
    assert "no customer-contact (客户联系) permission" in note_app
    assert stack.sim.customers.mass_messages == {}
    async with stack.bot[DB].session() as session:
        assert list(await session.scalars(select(ContentForward))) == []
        assert len(list(await session.scalars(select(Share).where(Share.content_id == item)))) == 2


@pytest.mark.parametrize("text, answer", [
    ("forward 99", "Sorry: There is no content #99 for you. Send content to see yours."),
    ("forward abc", "“abc” is not a number like 12"),
    ("forward", "“” is not a number like 12"),
])
async def test_bad_input_gets_a_clear_answer(stack: Stack, text: str, answer: str) -> None:
    [reply] = await stack.ask("p1", text)
    assert answer in reply


async def test_retired_and_out_of_audience_items_are_refused_like_content(stack: Stack) -> None:
    stack.sim.customers.give("p1", 2)
    blue = await add(stack, 'newcontent Blue only | https://brand.example/blue | | partner:"Blue Ocean"')
    [refused] = await stack.ask("p1", f"forward {blue}")
    assert refused == f"Sorry: There is no content #{blue} for you. Send content to see yours."
    old = await add(stack, "newcontent Old deck | https://brand.example/old")
    await stack.ask("mkt1", f"retirecontent {old}")
    [retired] = await stack.ask("p1", f"转发 {old}")
    assert retired == f"抱歉：素材 #{old} 已下架，不能再分享。"
    [staff] = await stack.ask("mkt1", f"forward {old}")
    assert staff == "“forward” is for partner staff only. Send help to see your commands."
    assert stack.sim.customers.mass_messages == {}


async def test_the_client_speaks_wecoms_customer_contact_api(stack: Stack) -> None:
    [customer] = stack.sim.customers.give("p1", 1)
    stack.sim.customers.no_permission.add("p2")
    async with aiohttp.ClientSession() as http:
        client = WeComClient(stack.config.wecom, http, SharedKeys(None, "fwd:"))
        assert await client.list_customers("p1") == [customer]
        assert await client.list_customers("mkt1") == []  # 84061: no customers
        with pytest.raises(WeComError) as no_permission:
            await client.list_customers("p2")
        assert no_permission.value.errcode == 84074 and no_permission.value.no_customer_permission
        link = {"msgtype": "link", "link": {"title": "T", "url": "https://brand.example/x"}}
        msgid, failed = await client.add_msg_template("p1", "hi", [link], [customer, "wmsomeoneelse"])
        assert failed == ["wmsomeoneelse"]
        assert [r["status"] for r in await client.groupmsg_send_result(msgid, "p1")] == [0]
        stack.sim.customers.confirm(msgid)
        [row] = await client.groupmsg_send_result(msgid, "p1")
        assert (row["external_userid"], row["status"]) == (customer, 1) and row["send_time"]
        with pytest.raises(WeComError) as nobody:
            await client.add_msg_template("p1", "hi", [link], ["wmsomeoneelse"])
        assert nobody.value.errcode == 41048 and nobody.value.no_customers
        with pytest.raises(WeComError) as bad_link:
            await client.add_msg_template("p1", "hi", [{"msgtype": "link", "link": {"title": "T", "url": "ftp://x"}}])
        assert bad_link.value.errcode == 45034
        with pytest.raises(WeComError) as unknown:
            await client.groupmsg_send_result("msgnope", "p1")
        assert unknown.value.errcode == 41047
        jobid = await client.add_moment_task(["p1", "p2"], "hi", [link])
        result = await client.moment_task_result(jobid)
        assert result["status"] == 3 and result["result"]["invalid_sender_list"]["user_list"] == ["p2"]


async def test_processing_the_same_message_twice_makes_one_mass_message(stack: Stack, monkeypatch) -> None:
    """The message's transaction fails after the handler ran (its commit, say): the inbox answers it
    again, and WeCom still gets one mass message, since it is created only after a commit."""
    item = await add(stack, "newcontent Deck | https://brand.example/deck")
    stack.sim.customers.give("p1", 2)
    finish, failed = inbox_module.inbox_store.finish, []

    async def finish_failing_once(session, claim, status, error=None):  # type: ignore[no-untyped-def]
        if not failed:
            failed.append(claim.id)
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection reset"))
        return await finish(session, claim, status, error)

    monkeypatch.setattr(inbox_module.inbox_store, "finish", finish_failing_once)
    [reply] = await stack.ask("p1", f"forward {item}")
    assert failed and "ready to go to your 2 WeCom customer(s)" in reply
    assert len(stack.sim.customers.mass_messages) == 1
    assert stack.sim.api_calls["externalcontact/add_msg_template"] == 1
    [forward] = await forwards_in_db(stack)
    assert (forward.inbox_id, forward.status, forward.msgid) == (failed[0], "created", next(iter(stack.sim.customers.mass_messages)))
    # The periodic job finds nothing pending and sends nothing again.
    assert await run_job(stack, send=True) == 0
    assert stack.sim.api_calls["externalcontact/add_msg_template"] == 1


async def test_a_forward_left_pending_by_a_crash_is_sent_once_by_the_job(stack: Stack) -> None:
    item = await add(stack, "newcontent Deck | https://brand.example/deck")
    stack.sim.customers.give("p1", 1)
    stack.bot[INBOX].after_commit = None  # the instance died right after the commit
    [reply] = await stack.ask("p1", f"forward {item}")
    assert "ready to go to your 1 WeCom customer(s)" in reply and stack.sim.customers.mass_messages == {}
    [forward] = await forwards_in_db(stack)
    assert (forward.status, forward.msgid) == ("pending", None)
    assert await run_job(stack, send=True) == 1
    assert await run_job(stack, send=True) == 0
    [message] = stack.sim.customers.sent_by("p1")
    [forward] = await forwards_in_db(stack)
    assert (forward.status, forward.msgid, forward.reachable) == ("created", message.msgid, 1)
    # One claimed for sending by an instance that then died is never sent again (at most once).
    await stack.ask("p1", f"forward {item}")
    async with stack.bot[DB].session() as session:
        second = (await forwards_in_db(stack))[-1]
        (await session.get(ContentForward, second.id)).status = "sending"
    assert await run_job(stack, send=True) == 0 and len(stack.sim.customers.sent_by("p1")) == 1


async def test_wecom_refusing_after_the_reply_tells_the_member(stack: Stack) -> None:
    item = await add(stack, "newcontent Deck | https://brand.example/deck")
    stack.sim.customers.give("p1", 1)
    stack.bot[INBOX].after_commit = None
    await stack.ask("p1", f"forward {item}")
    stack.sim.customers.customers["p1"] = []  # the customer left before WeCom was asked
    assert await run_job(stack, send=True) == 0
    [forward] = await forwards_in_db(stack)
    assert (forward.status, forward.msgid) == ("failed", None)
    stack.bot[INBOX].outbox.kick()
    [notice] = [m.body.get("content", "") for m in await stack.sim.wait_for_bot_messages("p1", 2)][1:]
    assert notice.startswith("企业微信未能创建刚才的客户群发")


async def test_moments_when_enabled_with_the_member_as_sender_and_the_results_come_back(stack: Stack) -> None:
    stack.config.wecom.forward_to_moments = True
    item = await add(stack, "newcontent Launch | https://brand.example/launch | summary")
    stack.sim.customers.give("p1", 2)
    [reply] = await stack.ask("p1", f"forward {item}")
    assert "A Moments post (客户朋友圈) with your link waits for you there too" in reply
    [task] = stack.sim.customers.moments_by("p1")
    assert task.senders == ["p1"] and task.invalid == []
    [attachment] = task.attachments
    assert attachment["msgtype"] == "link" and attachment["link"]["url"] == f"{stack.config.server.public_base_url}/t/{code_in(reply)}"
    assert attachment["link"]["title"] == "Launch"
    [forward] = await forwards_in_db(stack)
    assert (forward.moment, forward.moment_jobid, forward.moment_id) == (True, task.jobid, None)
    await run_job(stack)
    [forward] = await forwards_in_db(stack)
    assert (forward.moment_id, forward.moment_published) == (task.moment_id, False)
    stack.sim.customers.publish(task.moment_id)
    stack.sim.customers.confirm(forward.msgid)
    await run_job(stack)
    [forward] = await forwards_in_db(stack)
    assert (forward.moment_published, forward.reached) == (True, 2)
    [details] = await stack.ask("mkt1", f"素材 {item}")
    assert "企业微信转发：客户群发 1 次，已送达 2 位客户；客户朋友圈 1 条，已发表 1 条。" in details
    [mine] = await stack.ask("p1", "me")
    assert "Forwarded in WeCom: 1 customer mass message(s), reaching 2 customer(s); 1 Moments post(s), 1 published." in mine
    [figures, _chart] = await stack.ask("mkt1", f"统计 素材 {item}", expect=2)
    assert "客户群发送达客户：2 位" in figures
    [zh] = await stack.ask("p1", f"转发 {item}")
    assert "另已生成客户朋友圈任务（附您的专属链接），请在企业微信「客户朋友圈」中发表。" in zh
    assert len(stack.sim.customers.moments_by("p1")) == 2


async def test_no_moments_when_disabled_or_without_permission(stack: Stack) -> None:
    item = await add(stack, "newcontent Launch | https://brand.example/launch")
    stack.sim.customers.give("p1", 1)
    [reply] = await stack.ask("p1", f"forward {item}")
    assert "Moments" not in reply and stack.sim.customers.moments == {}
    [forward] = await forwards_in_db(stack)
    assert (forward.moment, forward.moment_jobid) == (False, None)
    stack.config.wecom.forward_to_moments = True
    stack.sim.customers.no_permission.add("p2")
    *_, note = await stack.ask("p2", f"forward {item}", expect=3)
    assert "no customer-contact" in note and stack.sim.customers.moments == {}
