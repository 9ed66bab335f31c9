"""Retention (store/retention.py, bot/retention.py): old rows go, recent and unfinished ones stay,
what the bot still reads stays however old, two instances delete each row once, and the figures
stay the same when raw clicks go (they are read from click_daily)."""
from __future__ import annotations

import asyncio
import os
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.config import RetentionConfig, load_config
from bot.config_checks import ConfigError
from bot.render.posters import PosterRenderer
from bot.retention import RetentionJob
from store import stats
from store.db import Database
from store.links import get_or_create_link, insert_clicks
from store.models import (Click, InboxMessage, JobRun, Lead, LeadTouch, Member, OutboxMessage, PendingUpload,
                          utcnow)
from store.periods import Period
from store.tasks import create_task
from tests.conftest import seed

NOW = utcnow()
OLD, RECENT = NOW - timedelta(days=40), NOW - timedelta(days=5)


def settings(**overrides: int) -> RetentionConfig:
    return RetentionConfig(**{"inbox_days": 30, "outbox_days": 30, "pending_uploads_days": 7, "job_runs_days": 90,
                              "clicks_days": 0, **overrides})


def inbox(key: str, user: str, at, status: str = "done", channel: str = "wecom") -> InboxMessage:
    return InboxMessage(channel=channel, dedupe_key=key, user_id=user, payload={}, status=status, attempts=1,
                        received_at=at, processed_at=at if status in ("done", "failed") else None)


def outbox(key: str, at, status: str = "sent", purpose: str = "reply", inbox_id: int | None = None) -> OutboxMessage:
    return OutboxMessage(channel="wecom", recipient="p1", kind="text", payload={"kind": "text", "text": key},
                         dedupe_key=key, purpose=purpose, status=status, attempts=1, next_attempt_at=at,
                         created_at=at, sent_at=at if status == "sent" else None, inbox_id=inbox_id)


async def fill(db: Database) -> None:
    """Rows named by what should happen to them: `gone...` is deleted, anything else stays."""
    async with db.session() as session:
        session.add_all([
            inbox("gone-old-done", "p1", OLD), inbox("gone-old-failed", "p1", OLD + timedelta(seconds=1), "failed"),
            inbox("old-pending", "p1", OLD + timedelta(seconds=2), "pending"),
            inbox("old-processing", "p2", OLD, "processing"),
            inbox("recent-done", "p1", RECENT),
            # p2's newest on WeCom (uses_wecom asks for one) and the only message of a WeChat follower.
            inbox("newest-of-p2", "p2", OLD + timedelta(seconds=3)),
            inbox("newest-of-follower", "oFollower", OLD, channel="wechat"),
            inbox("old-with-reply-queued", "p1", OLD + timedelta(seconds=4)),
        ])
        await session.flush()
        replied = await session.scalar(select(InboxMessage.id).where(InboxMessage.dedupe_key == "old-with-reply-queued"))
        session.add_all([
            outbox("gone-old-reply", OLD), outbox("gone-old-failed-notice", OLD, "failed", "notice"),
            outbox("gone-old-digest", OLD, purpose="digest"),
            outbox("old-pending-reply", OLD, "pending", inbox_id=replied),
            outbox("old-waiting", OLD, "waiting", "notice"),
            outbox("old-task-card", OLD, purpose="task_card"), outbox("old-reminder", OLD, purpose="reminder"),
            outbox("nurture:7:2026-01-01", OLD, purpose="notice"),
            outbox("recent-reply", RECENT),
        ])
        admin = await session.scalar(select(Member).where(Member.userid == "admin1"))
        partner = await session.scalar(select(Member).where(Member.userid == "p1"))
        session.add_all([
            PendingUpload(member_id=admin.id, media_id="gone", media_type="image", filename="", received_at=OLD),
            PendingUpload(member_id=partner.id, media_id="recent", media_type="image", filename="",
                          received_at=NOW - timedelta(days=2)),
            JobRun(name="gone-tiers", period="2025-01", at=NOW - timedelta(days=200)),
            JobRun(name="tiers", period="this-month", at=NOW - timedelta(days=10)),
        ])


async def survivors(db: Database) -> dict[str, set[str]]:
    async with db.session() as session:
        return {
            "inbox": set(await session.scalars(select(InboxMessage.dedupe_key))),
            "outbox": set(await session.scalars(select(OutboxMessage.dedupe_key))),
            "uploads": set(await session.scalars(select(PendingUpload.media_id))),
            "job_runs": set(await session.scalars(select(JobRun.name).where(JobRun.name != "retention"))),
        }


async def test_old_rows_go_and_the_rest_stays(database_url: str) -> None:
    await seed(database_url)
    db = Database(database_url)
    try:
        await fill(db)
        before = await survivors(db)
        deleted = await RetentionJob(db, settings(), 3600).run(NOW)
        after = await survivors(db)
        for table, keys in before.items():
            assert after[table] == {key for key in keys if not key.startswith("gone")}, table
        assert deleted == {"outbox": 3, "inbox": 2, "pending_uploads": 1, "job_runs": 1}
        # Nothing is left to delete: the next period's run finds nothing.
        again = await RetentionJob(db, settings(), 3600).run(NOW + timedelta(hours=1))
        assert set(again.values()) == {0}
    finally:
        await db.dispose()


async def test_zero_days_keeps_everything(database_url: str) -> None:
    await seed(database_url)
    db = Database(database_url)
    try:
        await fill(db)
        before = await survivors(db)
        keep = RetentionConfig(inbox_days=0, outbox_days=0, pending_uploads_days=0, job_runs_days=0, clicks_days=0)
        assert await RetentionJob(db, keep, 3600).run(NOW) == {}
        assert await survivors(db) == before
    finally:
        await db.dispose()


async def test_small_batches_work_off_a_backlog_over_runs(database_url: str) -> None:
    await seed(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            session.add_all([outbox(f"gone-{n}", OLD) for n in range(7)])
        bounded = settings(batch_size=2, max_batches=2)
        first = await RetentionJob(db, bounded, 3600).run(NOW)
        assert first["outbox"] == 4  # two statements of two rows, then the run stops
        second = await RetentionJob(db, bounded, 3600).run(NOW + timedelta(hours=1))
        assert second["outbox"] == 3
        assert (await survivors(db))["outbox"] == set()
    finally:
        await db.dispose()


async def test_two_instances_at_once_delete_each_row_once(database_url: str) -> None:
    await seed(database_url)
    setup = Database(database_url)
    try:
        await fill(setup)
        async with setup.session() as session:
            session.add_all([outbox(f"gone-bulk-{n}", OLD) for n in range(300)])
    finally:
        await setup.dispose()
    instances = [Database(database_url), Database(database_url)]
    try:
        # Same moment, same period: both try; the claim lets one of them delete.
        runs = await asyncio.gather(*(RetentionJob(db, settings(batch_size=50), 3600).run(NOW) for db in instances))
        assert sorted(bool(run) for run in runs) == [False, True]
        # Different periods (a late instance, a clock apart): both delete, and still no row twice.
        async with instances[0].session() as session:
            session.add_all([outbox(f"gone-more-{n}", OLD) for n in range(300)])
        later = await asyncio.gather(*(RetentionJob(db, settings(batch_size=50), 3600).run(NOW + timedelta(hours=h))
                                       for h, db in ((1, instances[0]), (2, instances[1]))))
        assert sum(run["outbox"] for run in later) == 300
        assert sum(run.get("outbox", 0) for run in runs) == 303
        async with instances[0].session() as session:
            assert await session.scalar(select(func.count()).select_from(JobRun).where(JobRun.name == "retention")) == 3
        assert {k for k in (await survivors(instances[0]))["outbox"] if k.startswith("gone")} == set()
    finally:
        for db in instances:
            await db.dispose()


async def test_raw_clicks_go_but_the_figures_stay(database_url: str) -> None:
    """Every figure reads click_daily; only clicks no lead touch or fraud flag refers to are deleted."""
    await seed(database_url)
    db = Database(database_url)
    zone = "Asia/Shanghai"
    try:
        async with db.session() as session:
            member = await session.scalar(select(Member).where(Member.userid == "p1"))
            task = await create_task(session, title="Spring", url="https://example.com/", creator=None, status="active")
            link = await get_or_create_link(session, task, member, "link")
            await insert_clicks(session, [
                {"link_id": link.id, "at": at, "visitor_id": f"v{n}", "ip_hash": "h", "user_agent": "ua",
                 "referrer": "", "is_bot": False, "is_unique": True, "event_id": f"e{n}"}
                for n, at in enumerate([OLD, OLD, OLD, RECENT])], zone)
            lead = Lead(name="A", phone="13800000000", source="form:link", link_id=link.id, owner_id=member.id)
            session.add(lead)
            await session.flush()
            touched = await session.scalar(select(Click.id).where(Click.event_id == "e0"))
            session.add(LeadTouch(lead_id=lead.id, link_id=link.id, click_id=touched, kind="click", at=OLD))
        period = Period(OLD.date() - timedelta(days=1), date.today() + timedelta(days=1), zone, "all")
        async with db.session() as session:
            before = await stats.funnel(session, stats.Scope(), period)
        deleted = await RetentionJob(db, settings(clicks_days=35), 3600).run(NOW)
        assert deleted["clicks"] == 2
        async with db.session() as session:
            assert set(await session.scalars(select(Click.event_id))) == {"e0", "e3"}
            assert await stats.funnel(session, stats.Scope(), period) == before
    finally:
        await db.dispose()


def test_poster_cache_keeps_what_is_used(tmp_path: Path) -> None:
    posters = PosterRenderer(tmp_path / "templates", tmp_path / "cache")
    posters.cache_dir.mkdir()
    month_ago = time.time() - 31 * 86400
    for name, age in (("old.png", month_ago), ("fresh.png", time.time()), (".crashed-1.tmp", time.time() - 7200),
                      ("reused.png", month_ago)):
        (posters.cache_dir / name).write_bytes(b"x")
        os.utime(posters.cache_dir / name, (age, age))
    from bot.render.posters import _reuse
    assert _reuse(posters.cache_dir / "reused.png")  # a cache hit renews it
    assert posters.prune(30) == 2
    assert sorted(p.name for p in posters.cache_dir.iterdir()) == ["fresh.png", "reused.png"]


async def test_click_stream_keeps_what_is_not_written_yet(redis_url: str, sqlite_url: str) -> None:
    from redis.asyncio import Redis

    from bot.web.clicks import GROUP, ClickRecorder

    redis = Redis.from_url(redis_url)
    prefix = f"retention{os.getpid()}{time.time_ns()}:"
    db = Database(sqlite_url)
    recorder = ClickRecorder(db, redis, prefix, 10)
    try:
        stream = recorder.stream
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        written = [await redis.xadd(stream, {"e": "{}"}) for _ in range(3)]  # acknowledged, never deleted
        await redis.xreadgroup(GROUP, "gone-writer", {stream: ">"}, count=3)
        await redis.xack(stream, GROUP, *written)
        in_flight = await redis.xadd(stream, {"e": "{}"})  # read by a writer, not written yet
        await redis.xreadgroup(GROUP, "busy-writer", {stream: ">"}, count=1)
        waiting = await redis.xadd(stream, {"e": "{}"})  # nobody read it yet
        await asyncio.sleep(0.05)
        trimmed, removed = await recorder.trim_stream(consumer_idle_seconds=0.01)
        assert trimmed == 3
        assert removed == 1  # gone-writer; busy-writer still holds an entry
        assert [entry_id for entry_id, _ in await redis.xrange(stream)] == [in_flight, waiting]
        consumers = {c["name"].decode() for c in await redis.xinfo_consumers(stream, GROUP)}
        assert consumers == {"busy-writer"}
    finally:
        await redis.delete(f"{prefix}clicks")
        await redis.aclose()
        await db.dispose()


@pytest.mark.parametrize("key, value", [("inbox_days", 1), ("outbox_days", -3), ("job_runs_days", 30),
                                        ("clicks_days", 7), ("batch_size", 0)])
def test_unsafe_settings_are_refused_in_one_line(tmp_path: Path, key: str, value: int) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[retention]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"\[retention\] {key} must be"):
        load_config(path, environ={})


def test_defaults_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[retention]\ninbox_days = 14\nclicks_days = 0\n")
    assert load_config(path, environ={}).retention.inbox_days == 14


async def test_a_redis_outage_leaves_the_database_part_done_and_counted(sqlite_url: str) -> None:
    from redis.asyncio import Redis

    from bot.metrics import RETENTION_DELETED, RETENTION_LAST_RUN
    from bot.web.clicks import ClickRecorder

    await seed(sqlite_url)
    db = Database(sqlite_url)
    dead = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)
    try:
        async with db.session() as session:
            session.add_all([outbox(f"gone-{n}", OLD) for n in range(3)])
        before = RETENTION_DELETED.labels("outbox")._value.get()
        deleted = await RetentionJob(db, settings(), 3600, clicks=ClickRecorder(db, dead, "x:", 10)).run(NOW)
        assert deleted["outbox"] == 3 and "click_stream_entries" not in deleted
        assert RETENTION_DELETED.labels("outbox")._value.get() == before + 3
        assert RETENTION_LAST_RUN._value.get() == NOW.timestamp()
    finally:
        await dead.aclose()
        await db.dispose()
