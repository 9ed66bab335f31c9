"""WeCom's daily send quota (licensed accounts × 200 recipient-sends a day): the broadcast preview says
what it uses of today's, and a broadcast past it is refused with the numbers, before and at confirm."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.app import DB
from store import outbox as outbox_store
from store.db import Database
from store.models import OutboxMessage
from tests.conftest import Stack, seed

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def sent_rows(db: Database, count: int, at: datetime, *, channel: str = "member", status: str = "sent") -> None:
    async with db.session() as session:
        session.add_all(OutboxMessage(channel=channel, recipient=f"u{i}", kind="text", payload={"kind": "text"},
                                      status=status, attempts=1, next_attempt_at=at, created_at=at,
                                      sent_at=at if status == "sent" else None)
                        for i in range(count))


async def test_todays_use_counts_what_went_out_today_and_what_waits(database_url: str) -> None:
    await seed(database_url)
    db = Database(database_url)
    now = datetime(2026, 12, 1, 0, 30, tzinfo=SHANGHAI)  # half past midnight in China, 16:30 UTC the day before
    try:
        await sent_rows(db, 3, now - timedelta(minutes=40))  # 23:50 yesterday, China time: not today's
        await sent_rows(db, 5, now - timedelta(minutes=10))
        await sent_rows(db, 2, now, channel="wecom")
        await sent_rows(db, 4, now, status="pending")  # will go out: counts already
        await sent_rows(db, 7, now, status="failed")
        await sent_rows(db, 6, now, channel="wechat")  # the Official Account has quotas of its own
        async with db.session() as session:
            quota = await outbox_store.send_quota(session, now=now, licensed_accounts=3)
            assert (quota.used, quota.limit, quota.left) == (5 + 2 + 4, 600, 600 - 11)
            assert quota.allows(589) and not quota.allows(590)
            # Without the account count, each active member stands for one account.
            members = await session.scalar(select(func.count()).select_from(OutboxMessage.metadata.tables["members"]))
            assert (await outbox_store.send_quota(session, now=now, licensed_accounts=0)).limit == 200 * members
    finally:
        await db.dispose()


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


async def test_the_preview_says_what_the_broadcast_uses_of_todays_quota(stack: Stack) -> None:
    stack.config.wecom.licensed_accounts = 1  # 200 a day
    [created] = await stack.ask("mkt1", "newtask Launch | https://brand.example/launch")
    task_id = int(created.split("#")[1].split(" ")[0])
    [preview] = await stack.ask("mkt1", f"下发 {task_id} 全部")
    line = next(s for s in preview.splitlines() if s.startswith("今天企业微信发送额度"))
    used, limit, kept, uses, left = numbers(line)  # "left" is after the 10 % kept for replies
    assert (limit, kept, uses) == (200, 20, 2) and left == limit - kept - used - uses
    async with stack.bot[DB].session() as session:
        statuses = list(await session.scalars(select(OutboxMessage.status).where(OutboxMessage.channel == "wecom")))
    # The replies to mkt1 in its callbacks' answers (passive) cost none of the quota; the others do.
    assert "answered" in statuses and used == statuses.count("sent") - (statuses[-1] == "sent")
    [english] = await stack.ask("mkt1", f"broadcast {task_id} all")
    used_now = statuses.count("sent")
    assert f"{used_now} of 200 used, 20 kept for replies; this uses 2, leaving {180 - used_now - 2}" in english


async def test_a_broadcast_past_todays_quota_is_refused_with_the_numbers(stack: Stack) -> None:
    stack.config.wecom.licensed_accounts = 1
    [created] = await stack.ask("mkt1", "newtask Launch | https://brand.example/launch")
    task_id = int(created.split("#")[1].split(" ")[0])
    db = stack.bot[DB]
    async with db.session() as session:
        before = await outbox_store.send_quota(session, now=datetime.now(SHANGHAI), licensed_accounts=1)
    # One left besides the 20 kept for replies (then the preview's reply may take it).
    await sent_rows(db, 179 - before.used, datetime.now(SHANGHAI))

    [refused] = await stack.ask("mkt1", f"下发 {task_id} 全部")
    assert refused.startswith(f"任务 #{task_id} 要发给 2 人，超出今天企业微信的发送额度：已用 ")
    used, limit, kept, left = numbers(refused.split("：", 1)[1])[:4]
    assert (limit, kept, left) == (200, 20, max(0, limit - kept - used)) and left < 2
    [confirmed] = await stack.ask("mkt1", f"broadcast {task_id} all confirm")
    assert "more than is left of today's WeCom send quota" in confirmed and "of 200 used" in confirmed
    async with db.session() as session:
        cards = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.task_id == task_id))
    assert cards == 0  # nothing queued

    [narrower] = await stack.ask("mkt1", f"broadcast {task_id} user:p1")
    assert "more than is left" in narrower or "this uses 1" in narrower
    stack.config.wecom.licensed_accounts = 2  # the corp bought more accounts
    [done] = await stack.ask("mkt1", f"broadcast {task_id} all confirm")
    assert "on its way to 2 member(s)" in done
    await stack.sim.wait_for_bot_messages("p1", 1)
