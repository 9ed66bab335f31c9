"""WeCom's daily send quota beyond broadcast (tests/test_broadcast_quota.py): `remind` says what it uses
and is refused past it with the numbers; automatic reminders and a newcomer's task cards send what
fits, earliest deadline first, and defer the rest in the outbox until the quota has room again,
dropping those no longer worth sending; the quota's lock keeps concurrent spenders within it."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import func, select

from bot.app import DB, OUTBOX
from bot.config import WeComConfig
from bot.jobs import release_deferred_messages, send_due_reminders
from handlers import command_table
from store import outbox as outbox_store
from store import quota as quota_store
from store.db import Database
from store.members import get_member
from store.models import OutboxMessage, Share, Task, utcnow
from tests.conftest import Stack, eventually, seed
from tests.test_broadcast_quota import SHANGHAI, sent_rows
from tests.test_onboarding import invite_code


async def quota_now(stack: Stack) -> quota_store.Allowance:
    """Today's quota as automatic sends and commands see it: less the share kept for replies."""
    async with stack.bot[DB].session() as session:
        return await quota_store.hold_quota(session, now=datetime.now(SHANGHAI), rules=stack.config.wecom)


async def leave_room(stack: Stack, room: int) -> None:
    """Fill today's quota with sent rows until exactly `room` is left (besides the replies' share)."""
    before = await quota_now(stack)
    await sent_rows(stack.bot[DB], before.left - room, datetime.now(SHANGHAI))
    assert (await quota_now(stack)).left == room


async def broadcast_task(stack: Stack, title: str, deadline_hours: float | None = None) -> int:
    [created] = await stack.ask("mkt1", f"newtask {title} | https://brand.example/{len(title)}")
    task_id = int(created.split("#")[1].split(" ")[0])
    await stack.ask("mkt1", f"broadcast {task_id} all confirm")
    await eventually(lambda: cards_sent(stack, task_id, 2))
    async with stack.bot[DB].session() as session:
        task = await session.get(Task, task_id)
        task.deadline = None if deadline_hours is None else utcnow() + timedelta(hours=deadline_hours)
        for row in await session.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task_id)):
            row.sent_at = utcnow() - timedelta(hours=3)  # old enough to be reminded of
    return task_id


async def cards_sent(stack: Stack, task_id: int, count: int) -> bool:
    async with stack.bot[DB].session() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.task_id == task_id, OutboxMessage.status == "sent")) == count


async def statuses(stack: Stack, purpose: str) -> list[tuple[int, str, str]]:
    async with stack.bot[DB].session() as session:
        return [tuple(r) for r in await session.execute(
            select(OutboxMessage.task_id, OutboxMessage.recipient, OutboxMessage.status)
            .where(OutboxMessage.purpose == purpose).order_by(OutboxMessage.task_id, OutboxMessage.recipient))]


async def deferred(stack: Stack, purpose: str) -> list[tuple[int, str, bool]]:
    """Which rows wait for the quota (the others are pending, sending or sent by now)."""
    return [(task, recipient, status == quota_store.DEFERRED) for task, recipient, status in await statuses(stack, purpose)]


async def test_remind_says_what_it_uses_and_is_refused_past_the_quota_with_the_numbers(stack: Stack) -> None:
    task_id = await broadcast_task(stack, "Spring")
    stack.config.wecom.licensed_accounts = 1  # 200 a day
    await leave_room(stack, 1)  # two have not shared: one place is not enough (20 are kept for replies)

    [refused] = await stack.ask("mkt1", f"催办 {task_id}")
    assert refused == (f"任务 #{task_id} 的提醒要发给 2 人，超出今天企业微信的发送额度：已用 179 / 共 200，留给回复 20，"
                       f"只剩 1。未发送任何提醒；请明天（北京时间）额度恢复后再催办。")
    used = (await quota_now(stack)).used  # the refusal went through message/send too
    [english] = await stack.ask("mkt1", f"remind {task_id}")
    assert english == (f"A reminder of task #{task_id} would go to 2 member(s), more than is left of today's WeCom "
                       f"send quota: {used} of 200 used, 20 kept for replies, {max(0, 180 - used)} left. Nobody was "
                       f"reminded; remind again tomorrow (China time), when the quota starts afresh.")
    assert await statuses(stack, "reminder") == []  # nothing queued

    stack.config.wecom.licensed_accounts = 2  # 400
    used = (await quota_now(stack)).used
    [done] = await stack.ask("mkt1", f"remind {task_id}")
    assert done == (f"Reminding 2 member(s) who have not shared task #{task_id}.\n"
                    f"Today's WeCom send quota: {used} of 400 used, 40 kept for replies; this uses 2, "
                    f"leaving {400 - 40 - used - 2}.")
    [again] = await stack.ask("mkt1", f"催办 {task_id}")  # already reminded today: uses nothing, says so
    assert again == f"尚未分享任务 #{task_id} 的 2 人今天都已提醒过。"


async def test_remind_with_bad_input_gets_a_reason(stack: Stack) -> None:
    [no_number] = await stack.ask("mkt1", "remind abc")
    assert "“abc” is not a number like 12" in no_number
    [missing] = await stack.ask("mkt1", "催办")
    assert missing and "催办" in missing
    [unknown] = await stack.ask("mkt1", "remind 999")
    assert unknown == "There is no task #999."
    [partner] = await stack.ask("p1", "remind 1")
    assert "remind" in partner.lower() or "催办" in partner


async def test_automatic_reminders_send_what_fits_earliest_deadline_first_and_defer_the_rest(stack: Stack) -> None:
    later = await broadcast_task(stack, "Later", deadline_hours=20)
    sooner = await broadcast_task(stack, "Sooner", deadline_hours=5)
    stack.config.wecom.licensed_accounts = 1
    await leave_room(stack, 3)  # four reminders are due
    db, commands = stack.bot[DB], command_table()

    assert await send_due_reminders(db, commands, stack.config) == 3
    assert await deferred(stack, "reminder") == [(later, "p1", False), (later, "p2", True),
                                                 (sooner, "p1", False), (sooner, "p2", False)]
    async with db.session() as session:
        assert (await outbox_store.backlog(session)).get(quota_store.DEFERRED) == 1  # partnerbot_outbox_deferred
        assert (await session.get(Task, later)).auto_reminded_at is not None  # not lost: deferred, not forgotten
    assert await send_due_reminders(db, commands, stack.config) == 0  # each task's reminder is queued once
    stack.bot[OUTBOX].kick()
    await eventually(lambda: reminders_delivered(stack, 3))

    assert await release_deferred_messages(db, stack.config) == 0  # no room today
    assert (await statuses(stack, "reminder"))[1][2] == quota_store.DEFERRED
    stack.config.wecom.licensed_accounts = 2  # room again (as on the next day in China)
    assert await release_deferred_messages(db, stack.config) == 1
    assert await release_deferred_messages(db, stack.config) == 0
    stack.bot[OUTBOX].kick()
    await eventually(lambda: reminders_delivered(stack, 4))
    assert [m.body["main_title"]["title"] for m in stack.sim.bot_messages("p2")].count("⏰ 提醒：Later") == 1


async def reminders_delivered(stack: Stack, count: int) -> bool:
    return sum(m.msgtype == "template_card" and m.body["main_title"]["title"].startswith("⏰")
               for userid in ("p1", "p2") for m in stack.sim.bot_messages(userid)) == count


async def test_deferred_reminders_no_longer_worth_sending_are_dropped_with_the_reason(stack: Stack) -> None:
    first = await broadcast_task(stack, "First", deadline_hours=5)
    second = await broadcast_task(stack, "Second", deadline_hours=6)
    stack.config.wecom.licensed_accounts = 1
    await leave_room(stack, 0)
    db = stack.bot[DB]
    assert await send_due_reminders(db, command_table(), stack.config) == 0
    assert [s for _, _, s in await statuses(stack, "reminder")] == [quota_store.DEFERRED] * 4
    async with db.session() as session:
        p1 = await get_member(session, "p1")
        session.add(Share(task_id=first, member_id=p1.id, channel="link"))  # p1 shared the first task since
        (await session.get(Task, second)).status = "ended"
    stack.config.wecom.licensed_accounts = 2
    assert await release_deferred_messages(db, stack.config) == 1  # only p2's reminder of the first task
    async with db.session() as session:
        rows = (await session.execute(select(OutboxMessage.task_id, OutboxMessage.recipient, OutboxMessage.status,
                                             OutboxMessage.last_error)
                                      .where(OutboxMessage.purpose == "reminder")
                                      .order_by(OutboxMessage.task_id, OutboxMessage.recipient))).all()
    going = ("pending", "sending", "sent")  # the sender may have taken it already
    assert [(t, r, "going" if s in going else s, e) for t, r, s, e in rows] == [
        (first, "p1", "failed", quota_store.SHARED_SINCE), (first, "p2", "going", None),
        (second, "p1", "failed", quota_store.DEADLINE_PASSED), (second, "p2", "failed", quota_store.DEADLINE_PASSED)]


async def test_a_newcomers_cards_past_the_quota_are_deferred_and_follow_when_it_has_room(stack: Stack) -> None:
    tasks = [await broadcast_task(stack, title, hours) for title, hours in (("Open", None), ("Soon", 5), ("Later", 30))]
    code = await invite_code(stack)
    stack.config.wecom.licensed_accounts = 1
    await leave_room(stack, 1)  # three cards for the newcomer, one place

    welcome, card = await stack.ask("newbie", f"加入 {code}", expect=2)
    assert welcome.endswith("\n另有 2 张任务卡片将在企业微信每日发送额度有余量时送达，发送“任务”可先查看。")
    assert stack.sim.bot_messages("newbie")[-1].body["main_title"]["title"] == f"新任务 #{tasks[1]}：Soon"
    newbie = [(task, waits) for task, recipient, waits in await deferred(stack, "task_card") if recipient == "newbie"]
    assert newbie == [(tasks[0], True), (tasks[1], False), (tasks[2], True)]  # the earliest deadline went
    [mine] = await stack.ask("newbie", "tasks")
    assert all(title in mine for title in ("Open", "Soon", "Later"))  # deferred cards: the tasks show already
    [details] = await stack.ask("mkt1", f"task {tasks[2]}")
    assert "1 wait for room in WeCom's daily send quota." in details

    stack.config.wecom.licensed_accounts = 2
    assert await release_deferred_messages(stack.bot[DB], stack.config) == 2
    stack.bot[OUTBOX].kick()  # as the job does when it released some
    messages = await stack.sim.wait_for_bot_messages("newbie", 5)  # welcome, card, tasks, and the two deferred
    assert [m.body["main_title"]["title"] for m in messages if m.msgtype == "template_card"] == [
        f"新任务 #{tasks[1]}：Soon", f"新任务 #{tasks[2]}：Later", f"新任务 #{tasks[0]}：Open"]  # deadline first


async def test_a_newcomer_within_the_quota_gets_every_card_and_hears_of_no_delay(stack: Stack) -> None:
    await broadcast_task(stack, "Open")
    code = await invite_code(stack)
    welcome, card = await stack.ask("newbie", f"join {code}", expect=2)
    assert welcome.endswith("help for everything else.")
    assert await statuses(stack, "task_card") and quota_store.DEFERRED not in {
        s for _, _, s in await statuses(stack, "task_card")}


async def test_the_quota_lock_keeps_concurrent_spenders_within_it(database_url: str) -> None:
    """Five transactions each queue all the room they see: without the lock (PostgreSQL) each would
    see the same room and together queue five times it."""
    await seed(database_url)
    db = Database(database_url)
    now = datetime.now(SHANGHAI)
    try:
        async with db.session() as session:
            limit = (await outbox_store.send_quota(session, now=now, licensed_accounts=1)).limit
        await sent_rows(db, limit - 10, now)

        async def spend(n: int) -> tuple[int, int]:
            async with db.session() as session:
                quota = await quota_store.hold_quota(session, now=now, rules=WeComConfig(licensed_accounts=1, reply_headroom=0))
                await asyncio.sleep(0.05)  # the others reach their count meanwhile, but for the lock
                rows = [(f"u{n}-{i}", f"spend:{n}:{i}", {"kind": "text", "content": "x"}) for i in range(10)]
                return await quota_store.queue_within(session, quota.left, task_id=None, purpose="notice", rows=rows)

        results = await asyncio.gather(*(spend(n) for n in range(5)), return_exceptions=True)
        done = [r for r in results if isinstance(r, tuple)]
        assert done and sum(now_ for now_, _ in done) == 10  # exactly the room, whoever got it
        assert sum(later for _, later in done) == 10 * len(done) - 10
        async with db.session() as session:
            assert (await outbox_store.send_quota(session, now=now, licensed_accounts=1)).left == 0
            assert await quota_store.release_deferred(session, 0, utcnow()) == 0
    finally:
        await db.dispose()


async def test_release_goes_by_deadline_then_queue_order_and_skips_rows_queued_before(database_url: str) -> None:
    await seed(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            far, near = Task(title="far", target_url="https://x.example", deadline=utcnow() + timedelta(days=2)), \
                Task(title="near", target_url="https://x.example", deadline=utcnow() + timedelta(days=1))
            undated = Task(title="undated", target_url="https://x.example")
            session.add_all([far, near, undated])
            await session.flush()
            for task in (undated, far, near):
                rows = [(f"u{task.id}", f"t{task.id}", {"kind": "text", "content": task.title})]
                assert await quota_store.queue_within(session, 0, task_id=task.id, purpose="task_card",
                                                      rows=rows) == (0, 1)
                assert await quota_store.queue_within(session, 5, task_id=task.id, purpose="task_card",
                                                      rows=rows) == (0, 0)  # the key was queued already
            ids = {far.id: "far", near.id: "near", undated.id: "undated"}
        order = []
        for _ in range(3):
            async with db.session() as session:
                assert await quota_store.release_deferred(session, 1, utcnow()) == 1
                released = await session.scalar(select(OutboxMessage.task_id).where(OutboxMessage.status == "pending")
                                                 .order_by(OutboxMessage.next_attempt_at.desc(), OutboxMessage.id.desc()))
                order.append(ids[released])
                await session.execute(OutboxMessage.__table__.update().where(OutboxMessage.status == "pending")
                                      .values(status="sent"))
        assert order == ["near", "far", "undated"]
    finally:
        await db.dispose()
