"""Tasks in chat: create, broadcast with a confirm step, cards with working buttons, reminders."""
import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.app import DB
from bot.jobs import send_due_reminders
from handlers import command_table
from store.members import MemberRow
from store.models import Broadcast, OutboxMessage, Share, Task, utcnow
from tests.conftest import Stack, eventually


async def count(stack: Stack, model) -> int:  # type: ignore[no-untyped-def]
    async with stack.bot[DB].session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


async def new_task(stack: Stack, text: str = "Spring launch | https://brand.example/spring?x=1#top") -> int:
    [reply] = await stack.ask("mkt1", f"newtask {text}")
    assert reply.startswith("Task #"), reply
    return int(reply.split("#")[1].split(" ")[0])


async def test_marketer_creates_and_broadcasts_and_partner_gets_a_working_card(stack: Stack) -> None:
    task_id = await new_task(stack)
    [preview] = await stack.ask("mkt1", f"broadcast {task_id} partner:星河科技")
    assert f"Task #{task_id} “Spring launch” will go to 1 member(s)" in preview
    assert f"broadcast {task_id} partner:星河科技 confirm" in preview
    assert stack.sim.bot_messages("p1") == []  # nothing goes out before the confirmation

    [done] = await stack.ask("mkt1", f"broadcast {task_id} partner:星河科技 confirm")
    assert f"on its way to 1 member(s)" in done
    [card] = await stack.sim.wait_for_bot_messages("p1", 1)
    assert card.msgtype == "template_card"
    assert card.body["main_title"]["title"] == f"新任务 #{task_id}：Spring launch"
    assert [b["key"] for b in card.body["button_list"]] == [f"海报 {task_id}", f"链接 {task_id}", f"任务 {task_id}"]
    assert stack.sim.bot_messages("p2") == []  # another partner's staff

    await stack.sim.click("p1", card.body["button_list"][-1]["key"], card.body["task_id"])
    messages = await stack.sim.wait_for_bot_messages("p1", 2)
    assert messages[1].body["content"].startswith(f"#{task_id} Spring launch")
    assert "您还没有分享" in messages[1].body["content"]

    [mine] = await stack.ask("p1", "任务")
    assert f"#{task_id} Spring launch" in mine and "未分享" in mine
    [details] = await stack.ask("mkt1", f"task {task_id}")
    assert "Status: active" in details and "1 sent" in details


async def test_broadcasting_again_sends_nobody_a_second_card(stack: Stack) -> None:
    task_id = await new_task(stack)
    await stack.ask("mkt1", f"broadcast {task_id} all confirm")
    await stack.sim.wait_for_bot_messages("p1", 1)
    [again] = await stack.ask("mkt1", f"下发 {task_id} 全部 确认")
    assert again == f"符合条件的 2 人都已收到任务 #{task_id}。"
    [wider] = await stack.ask("mkt1", f"broadcast {task_id} all user:mkt1")
    assert "will go to 1 member(s) (2 already have it)" in wider
    await asyncio.sleep(0.5)
    assert len(stack.sim.bot_messages("p1")) == 1 and len(stack.sim.bot_messages("p2")) == 1
    assert await count(stack, Broadcast) == 1


@pytest.mark.parametrize("text, expected", [
    ("newtask Just a title", "give a title and a link separated by |"),
    ("newtask  | https://x.example", "Task not created: the title is empty."),
    ("newtask T | javascript:alert(1)", "the link must be a web address starting with http:// or https://"),
    ("newtask T | ftp://files.example/a", "the link must be a web address"),
    ("newtask T | https://user:pw@evil.example/", "must not contain a user name or password"),
    ("newtask T | https:// spaced.example", "the link must be a web address"),
    ("newtask " + "x" * 65 + " | https://x.example", "the title is 65 characters; at most 64"),
    ("newtask T | https://x.example | Bad Template!", "there is no poster template “Bad Template!”; templates: classic"),
    ("newtask T | https://x.example | classic | 2020-01-01", "the deadline is in the past"),
    ("newtask T | https://x.example | classic | someday", "“someday” is not a date"),
    ("新任务 标题 | javascript:alert(1)", "未创建任务：链接必须是以 http:// 或 https:// 开头的网址。"),
])
async def test_bad_task_input_is_refused_with_the_reason(stack: Stack, text: str, expected: str) -> None:
    [reply] = await stack.ask("mkt1", text)
    assert expected in reply
    assert await count(stack, Task) == 0


async def test_partners_cannot_create_broadcast_or_remind(stack: Stack) -> None:
    [reply] = await stack.ask("p1", "newtask T | https://x.example")
    assert reply.startswith("“newtask” is for admins and marketers only")
    task_id = await new_task(stack)
    for text in (f"broadcast {task_id} all confirm", f"remind {task_id}"):
        [reply] = await stack.ask("p1", text)
        assert "is for admins and marketers only" in reply
    [reply] = await stack.ask("p1", f"任务 {task_id}")  # not sent to them: private
    assert reply == f"没有属于您的任务 #{task_id}。发送“任务”查看您的任务。"
    assert await count(stack, OutboxMessage) == 5 and await count(stack, Broadcast) == 0  # only replies


@pytest.mark.parametrize("targets, expected", [
    ("partner:Nobody", "no partner is called “Nobody”; partners: Blue Ocean, 星河科技"),
    ("region:火星", "no partner staff in region “火星”; regions: 华东, 华南"),
    ("tag:vip", "no member has tag “vip”; tags: none"),
    ("user:ghost", "no member has user id “ghost”"),
    ("everyone", "“everyone” is not a target"),
    ("", "say who gets it"),
])
async def test_bad_targets_are_explained(stack: Stack, targets: str, expected: str) -> None:
    task_id = await new_task(stack)
    [reply] = await stack.ask("mkt1", f"broadcast {task_id} {targets} confirm".replace("  ", " "))
    assert expected in reply
    assert await count(stack, Broadcast) == 0


async def test_unknown_or_ended_tasks_cannot_be_broadcast(stack: Stack) -> None:
    [reply] = await stack.ask("mkt1", "broadcast 99 all confirm")
    assert reply == "There is no task #99."
    task_id = await new_task(stack)
    async with stack.bot[DB].session() as session:
        (await session.get(Task, task_id)).status = "ended"
    [reply] = await stack.ask("mkt1", f"broadcast {task_id} all confirm")
    assert reply == f"Task #{task_id} has ended; it cannot be sent again."


async def test_tags_from_import_target_a_broadcast(stack: Stack) -> None:
    from tests.conftest import seed
    await seed(stack.config.database.url, [MemberRow(0, "p2", "Li Na", "partner", "Blue Ocean", "华南", (), ("vip",))])
    task_id = await new_task(stack)
    [reply] = await stack.ask("mkt1", f"broadcast {task_id} tag:vip")
    assert "will go to 1 member(s)" in reply


async def test_remind_reaches_only_those_who_have_not_shared_once_a_day(stack: Stack) -> None:
    task_id = await new_task(stack)
    await stack.ask("mkt1", f"broadcast {task_id} all confirm")
    await stack.sim.wait_for_bot_messages("p1", 1)
    await stack.sim.wait_for_bot_messages("p2", 1)
    async with stack.bot[DB].session() as session:  # p1 shared (posters and links record this)
        p1 = await session.scalar(select(OutboxMessage.id).where(OutboxMessage.recipient == "p1"))
        from store.members import get_member
        session.add(Share(task_id=task_id, member_id=(await get_member(session, "p1")).id, channel="link"))
    [reply] = await stack.ask("mkt1", f"催办 {task_id}")
    done, quota = reply.split("\n")
    assert done == f"已提醒 1 位尚未分享任务 #{task_id} 的成员。"
    assert quota.startswith("今天企业微信发送额度：已用 ") and "本次用 1，" in quota  # tests/test_broadcast_quota.py: the numbers
    [reminder] = (await stack.sim.wait_for_bot_messages("p2", 2))[1:]
    assert reminder.body["main_title"]["title"] == "⏰ 提醒：Spring launch"
    [again] = await stack.ask("mkt1", f"remind {task_id}")
    assert again == f"All 1 member(s) who have not shared task #{task_id} were already reminded today."
    await asyncio.sleep(0.3)
    assert len(stack.sim.bot_messages("p1")) == 1 and len(stack.sim.bot_messages("p2")) == 2


async def test_automatic_reminder_goes_out_once_across_instances(stack: Stack) -> None:
    task_id = await new_task(stack)
    await stack.ask("mkt1", f'broadcast {task_id} partner:"Blue Ocean" confirm')
    await stack.sim.wait_for_bot_messages("p2", 1)
    async with stack.bot[DB].session() as session:
        (await session.get(Task, task_id)).deadline = utcnow() + timedelta(hours=3)
    db, commands = stack.bot[DB], command_table()
    assert await send_due_reminders(db, commands, stack.config) == 0  # the card only just arrived
    async with stack.bot[DB].session() as session:
        assert (await session.get(Task, task_id)).auto_reminded_at is None  # not used up by waiting
        for row in await session.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task_id)):
            row.sent_at = utcnow() - timedelta(hours=3)
    results = await asyncio.gather(*(send_due_reminders(db, commands, stack.config) for _ in range(4)))
    assert sorted(results) == [0, 0, 0, 1]
    await eventually(lambda: _sent_reminders(stack))
    assert await send_due_reminders(db, commands, stack.config) == 0


async def _sent_reminders(stack: Stack) -> bool:
    return len(stack.sim.bot_messages("p2")) == 2


async def test_help_lists_only_what_the_role_may_use(stack: Stack) -> None:
    [partner] = await stack.ask("p2", "help")
    [marketer] = await stack.ask("mkt1", "help")
    assert "tasks — your open tasks" in partner and "newtask" not in partner and "broadcast" not in partner
    assert "newtask Title | https://…" in marketer and "broadcast 12 partner:NAME" in marketer
