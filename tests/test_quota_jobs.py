"""WeCom's daily send quota for every message a periodic job sends by itself (store/quota.py), beyond
the reminders and newcomers' cards of tests/test_quota_everywhere.py: nurturing prompts, idle-lead
warnings and recycling notices, the daily digest, tier changes, monthly statements and fraud notices
send what fits and defer the rest until the quota has room; deferred rows no longer worth sending are
dropped with the reason; and a share of the quota stays free for replies to members' own messages."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from bot.app import DB, OUTBOX
from bot.config import Config
from bot.metrics import REGISTRY
from bot.jobs import (recalculate_tiers, recycle_idle_leads, release_deferred_messages, remind_nurturing,
                      scan_for_fraud, send_daily_digest, send_monthly_statements)
from store import outbox as outbox_store
from store import quota as quota_store
from store.db import Database
from store.members import get_member
from store.models import Lead, OutboxMessage, PointsEntry, utcnow
from tests.conftest import Stack, eventually, make_config, seed, start_stack
from tests.test_broadcast_quota import SHANGHAI, sent_rows
from tests.test_fraud import add_clicks, links_for
from tests.test_pool import add_leads
from tests.test_quota_everywhere import leave_room, quota_now

@pytest.fixture
async def any_stack(database_url: str) -> AsyncIterator[Stack]:
    """Bot + simulator with the standard members, on SQLite and on PostgreSQL (the quota's lock and
    the deferred rows' statements differ between them)."""
    await seed(database_url)
    running = await start_stack(make_config(database_url))
    yield running
    await running.stop()


JOB_PURPOSES = {quota_store.NURTURE, quota_store.RECYCLED, quota_store.IDLE_WARNING, quota_store.DIGEST,
                quota_store.TIER, quota_store.STATEMENT, quota_store.FRAUD_FLAGS}


async def something_due_for_every_job(stack: Stack) -> None:
    """p1 holds three leads: one nurturing and due, one idle past recycling, one recycled tomorrow;
    every partner changes tier (all thresholds 0: gold); p1 earned points; a visitor flooded a link."""
    await add_leads(stack.config.database.url)
    for lead_id in (1, 2, 3):
        await stack.ask("p1", f"claim {lead_id}")
    async with stack.bot[DB].session() as session:
        nurturing = await session.get(Lead, 1)
        nurturing.status, nurturing.next_contact_at = "nurturing", utcnow() - timedelta(minutes=1)
        (await session.get(Lead, 2)).claimed_at = utcnow() - timedelta(days=8)  # past idle_days (7)
        (await session.get(Lead, 3)).claimed_at = utcnow() - timedelta(days=6, hours=12)  # recycled tomorrow
        p1 = await get_member(session, "p1")
        session.add(PointsEntry(ref="quota-test#1", basis="quota-test", kind="share", member_id=p1.id,
                                partner_id=p1.partner_id, points=5, commission=Decimal(0), at=utcnow()))
    t = stack.config.tiers
    t.silver_unique_clicks = t.silver_leads = t.silver_revenue = 0
    t.gold_unique_clicks = t.gold_leads = t.gold_revenue = 0
    links = await links_for(stack)
    await add_clicks(stack, links["p1"], 25, visitor="flooder", tag="vf")


async def run_every_job(stack: Stack) -> None:
    db, config = stack.bot[DB], stack.config
    zone = ZoneInfo(config.server.timezone)
    today = utcnow().astimezone(zone).date()
    hour = time(config.stats.digest_hour, 5)
    await remind_nurturing(db, config)
    await recycle_idle_leads(db, config)
    await send_daily_digest(db, config, now=datetime.combine(today + timedelta(days=1), hour, tzinfo=zone))
    next_month = (today.replace(day=1) + timedelta(days=32)).replace(day=config.tiers.recalc_day)
    assert await recalculate_tiers(db, config, now=datetime.combine(next_month, hour, tzinfo=zone)) > 0
    # The 1st of next month: this month's statement (the points were earned today).
    assert await send_monthly_statements(db, config, now=datetime.combine(next_month.replace(day=1), hour,
                                                                          tzinfo=zone)) == 1
    assert await scan_for_fraud(db, config) == 1


async def rows_by_purpose(stack: Stack) -> dict[str, list[str]]:
    async with stack.bot[DB].session() as session:
        found: dict[str, list[str]] = {}
        for purpose, status in await session.execute(
                select(OutboxMessage.purpose, OutboxMessage.status).where(OutboxMessage.purpose.in_(JOB_PURPOSES))):
            found.setdefault(purpose, []).append(status)
        return found


async def test_every_job_defers_past_the_quota_and_its_messages_follow_when_it_has_room(any_stack: Stack) -> None:
    stack = any_stack
    await something_due_for_every_job(stack)
    stack.config.wecom.licensed_accounts = 1
    await leave_room(stack, 0)

    def counted() -> dict[str, float]:  # partnerbot_quota_deferred_total{purpose}
        return {p: REGISTRY.get_sample_value("partnerbot_quota_deferred_total", {"purpose": p}) or 0
                for p in JOB_PURPOSES}

    before = counted()
    await run_every_job(stack)
    waiting = await rows_by_purpose(stack)
    assert set(waiting) == JOB_PURPOSES  # every job queued something, and all of it waits
    assert {p: counted()[p] - before[p] for p in JOB_PURPOSES} == {p: len(s) for p, s in waiting.items()}
    assert {status for statuses in waiting.values() for status in statuses} == {quota_store.DEFERRED}
    assert (await quota_now(stack)).left == 0  # none of it was counted against today's quota
    assert await release_deferred_messages(stack.bot[DB], stack.config) == 0  # still no room

    stack.config.wecom.licensed_accounts = 2  # room again (as on the next day in China)
    total = sum(len(statuses) for statuses in waiting.values())
    assert await release_deferred_messages(stack.bot[DB], stack.config) == total
    assert quota_store.DEFERRED not in {s for statuses in (await rows_by_purpose(stack)).values() for s in statuses}
    stack.bot[OUTBOX].kick()  # as the job does when it released some

    async def prompt() -> list[str]:
        return [m.body.get("content", "") for m in stack.sim.bot_messages("p1")
                if "今天该联系线索" in m.body.get("content", "")]

    [text] = await eventually(prompt)
    assert text.startswith("⏰ 今天该联系线索 #1")


async def test_a_job_queues_what_fits_and_defers_only_the_rest(stack: Stack) -> None:
    """Tier changes to p1 and p2 (their partners) and the admin's summary, with two places left: two go now."""
    t = stack.config.tiers
    t.silver_unique_clicks = t.silver_leads = t.silver_revenue = 0
    t.gold_unique_clicks = t.gold_leads = t.gold_revenue = 0
    stack.config.wecom.licensed_accounts = 1
    await leave_room(stack, 2)
    zone = ZoneInfo(stack.config.server.timezone)
    next_month = (utcnow().astimezone(zone).date().replace(day=1) + timedelta(days=32))
    when = datetime.combine(next_month.replace(day=stack.config.tiers.recalc_day), time(stack.config.stats.digest_hour, 5),
                            tzinfo=zone)
    assert await recalculate_tiers(stack.bot[DB], stack.config, now=when) == 2  # 星河科技 and Blue Ocean
    statuses = (await rows_by_purpose(stack))[quota_store.TIER]
    assert len(statuses) == 3 and statuses.count(quota_store.DEFERRED) == 1  # p1, p2, admin1: two fit


async def test_deferred_rows_no_longer_worth_sending_are_dropped_with_the_reason(database_url: str) -> None:
    """A past day's digest, a tier change a later one replaced, an idle warning a day old are dropped;
    today's digest, the latest tier change, a fresh warning, statements and recycling notices (however
    old) are kept. Nurturing prompts: test_a_deferred_nurturing_prompt_is_dropped_once_its_lead_moved_on."""
    await seed(database_url)
    db = Database(database_url)
    now = utcnow()
    zone = "Asia/Shanghai"
    local_midnight = datetime.combine(now.astimezone(ZoneInfo(zone)).date(), time(0), tzinfo=ZoneInfo(zone))
    text = {"kind": "text", "content": "x"}
    queued = [  # (key, purpose, recipient, queued how long before now (None: just before today began))
        ("digest-old", quota_store.DIGEST, "admin1", None), ("digest-today", quota_store.DIGEST, "admin2", 0),
        ("tier-may", quota_store.TIER, "p1", 40), ("tier-jun", quota_store.TIER, "p1", 10),
        ("tier-other", quota_store.TIER, "p2", 40),
        ("warn-old", quota_store.IDLE_WARNING, "p1", 25), ("warn-new", quota_store.IDLE_WARNING, "p2", 2),
        ("statement-old", quota_store.STATEMENT, "p1", 24 * 40), ("recycled-old", quota_store.RECYCLED, "p1", 24 * 9),
        ("flags-old", quota_store.FRAUD_FLAGS, "admin1", 24 * 9)]
    try:
        async with db.session() as session:
            for key, purpose, recipient, hours in queued:
                assert await quota_store.queue_within(session, 0, task_id=None, purpose=purpose,
                                                      rows=[(recipient, key, text)]) == (0, 1)
                at = local_midnight - timedelta(minutes=1) if hours is None else now - timedelta(hours=hours)
                await session.execute(OutboxMessage.__table__.update().where(OutboxMessage.dedupe_key == key)
                                      .values(created_at=at))
        async with db.session() as session:
            assert await quota_store.drop_stale_deferred(session, now, zone) == 3
        async with db.session() as session:
            rows = dict((key, (status, error)) for key, status, error in await session.execute(
                select(OutboxMessage.dedupe_key, OutboxMessage.status, OutboxMessage.last_error)))
        kept = (quota_store.DEFERRED, None)
        assert rows == {
            "digest-old": ("failed", quota_store.PAST_DAY), "digest-today": kept,
            "tier-may": ("failed", quota_store.SUPERSEDED), "tier-jun": kept, "tier-other": kept,
            "warn-old": ("failed", quota_store.WARNED_TOO_LATE), "warn-new": kept,
            "statement-old": kept, "recycled-old": kept, "flags-old": kept}
    finally:
        await db.dispose()


async def nurturing_leads_of_p1(db: Database, count: int) -> None:
    """Leads 1..count held by p1, nurturing, their next-contact date just come."""
    async with db.session() as session:
        p1 = await get_member(session, "p1")
        for lead_id in range(1, count + 1):
            lead = await session.get(Lead, lead_id)
            lead.owner_id, lead.status, lead.next_contact_at = p1.id, "nurturing", utcnow() - timedelta(minutes=1)


async def no_room_today(db: Database, config: Config) -> None:
    config.wecom.licensed_accounts = 1
    await sent_rows(db, 200, datetime.now(SHANGHAI))


async def test_a_deferred_nurturing_prompt_is_dropped_once_its_lead_moved_on(database_url: str) -> None:
    """Prompts deferred for four of p1's nurturing leads; meanwhile one was won, one given another date,
    one handed to p2. Only the untouched lead's prompt goes when the quota has room; the others are
    dropped with the reason."""
    await seed(database_url)
    await add_leads(database_url)
    config, db = make_config(database_url), Database(database_url)
    try:
        await nurturing_leads_of_p1(db, 4)
        await no_room_today(db, config)
        assert await remind_nurturing(db, config) == 4
        async with db.session() as session:
            (await session.get(Lead, 2)).status = "won"
            (await session.get(Lead, 3)).next_contact_at = utcnow() + timedelta(days=30)
            (await session.get(Lead, 4)).owner_id = (await get_member(session, "p2")).id
        config.wecom.licensed_accounts = 2
        assert await release_deferred_messages(db, config) == 1
        async with db.session() as session:
            rows = (await session.execute(
                select(OutboxMessage.dedupe_key, OutboxMessage.status, OutboxMessage.last_error)
                .where(OutboxMessage.purpose == quota_store.NURTURE).order_by(OutboxMessage.dedupe_key))).all()
        assert [(key.split(":")[1], status, error) for key, status, error in rows] == [
            ("1", "pending", None), *[(str(i), "failed", quota_store.NURTURE_OUTDATED) for i in (2, 3, 4)]]
    finally:
        await db.dispose()


async def test_deferred_messages_are_counted_only_once_their_transaction_commits(database_url: str) -> None:
    """partnerbot_quota_deferred_total: a job whose transaction rolls back after queueing counts nothing."""
    await seed(database_url)
    await add_leads(database_url)
    config, db = make_config(database_url), Database(database_url)

    def counted() -> float:
        return REGISTRY.get_sample_value("partnerbot_quota_deferred_total", {"purpose": quota_store.NURTURE}) or 0

    def refuse(session: Session) -> None:
        raise RuntimeError("the commit fails")

    try:
        await nurturing_leads_of_p1(db, 1)
        await no_room_today(db, config)
        before = counted()
        event.listen(Session, "before_commit", refuse)
        try:
            with pytest.raises(RuntimeError, match="the commit fails"):
                await remind_nurturing(db, config)
        finally:
            event.remove(Session, "before_commit", refuse)
        assert counted() == before
        async with db.session() as session:
            nurture_rows = select(OutboxMessage.id).where(OutboxMessage.purpose == quota_store.NURTURE)
            assert await session.scalar(nurture_rows) is None
        assert await remind_nurturing(db, config) == 1
        assert counted() == before + 1
    finally:
        await db.dispose()


async def test_automatic_sends_leave_the_replies_share_free(any_stack: Stack) -> None:
    """With only the replies' share left, every job defers and nothing is released into it: a member's
    question is still answered within the real quota, and commands are refused with the share named."""
    stack = any_stack
    await something_due_for_every_job(stack)
    stack.config.wecom.licensed_accounts = 1  # 200 a day, 20 kept for replies (the default 10 %)
    await leave_room(stack, 0)
    async with stack.bot[DB].session() as session:
        raw = await outbox_store.send_quota(session, now=datetime.now(SHANGHAI), licensed_accounts=1)
    assert raw.left == 20

    await run_every_job(stack)
    assert await release_deferred_messages(stack.bot[DB], stack.config) == 0
    async with stack.bot[DB].session() as session:
        assert (await outbox_store.send_quota(session, now=datetime.now(SHANGHAI), licensed_accounts=1)).left == 20

    [answer] = await stack.ask("p2", "help")  # a reply: never held back, and the quota still has room for it
    assert answer
    async with stack.bot[DB].session() as session:
        assert (await outbox_store.send_quota(session, now=datetime.now(SHANGHAI), licensed_accounts=1)).left >= 19
    [created] = await stack.ask("mkt1", "newtask Launch | https://brand.example/launch")
    task_id = int(created.split("#")[1].split(" ")[0])
    [refused] = await stack.ask("mkt1", f"下发 {task_id} 全部")
    assert "留给回复 20，只剩 0。" in refused  # 20 are free, but not for a broadcast


async def test_without_a_share_for_replies_jobs_may_use_the_whole_quota(stack: Stack) -> None:
    stack.config.wecom.reply_headroom = 0
    stack.config.wecom.licensed_accounts = 1
    await leave_room(stack, 1)
    async with stack.bot[DB].session() as session:
        assert (await outbox_store.send_quota(session, now=datetime.now(SHANGHAI), licensed_accounts=1)).left == 1
    zone = ZoneInfo(stack.config.server.timezone)
    tomorrow = utcnow().astimezone(zone).date() + timedelta(days=1)
    when = datetime.combine(tomorrow, time(stack.config.stats.digest_hour, 5), tzinfo=zone)
    assert await send_daily_digest(stack.bot[DB], stack.config, now=when) == 1  # admin1's, in the last place


async def test_release_by_key_lets_only_those_rows_go(database_url: str) -> None:
    """The recycling job writes its notices deferred with each recycle, then lets go of its own."""
    await seed(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            rows = [(f"u{i}", f"recycled:{i}", {"kind": "text", "content": "x"}) for i in range(3)]
            assert await quota_store.queue_within(session, 0, task_id=None, purpose=quota_store.RECYCLED,
                                                  rows=rows) == (0, 3)
        async with db.session() as session:
            assert await quota_store.release_deferred(session, 5, utcnow(), keys=["recycled:2", "recycled:0"]) == 2
            assert await quota_store.release_deferred(session, 5, utcnow(), keys=[]) == 0
        async with db.session() as session:
            assert dict((await session.execute(select(OutboxMessage.dedupe_key, OutboxMessage.status))).all()) == {
                "recycled:0": "pending", "recycled:1": quota_store.DEFERRED, "recycled:2": "pending"}
    finally:
        await db.dispose()
