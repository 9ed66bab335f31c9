"""Periodic jobs: `schedule` is the table of what runs how often. Each runs on every instance; a
conditional update in the database decides which instance does a given piece of work, so it happens
once however many instances run. What the notices say is written in handlers/notices.py."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.forwarding import read_forward_results, send_forwards
from bot.deferred import NOTHING_QUEUED, Queued, count_deferred
from bot.metrics import JOB_RUNS, QUOTA_DEFERRED_DROPPED
from bot.retention import RetentionJob
from handlers import notices
from handlers.context import CommandTable, CustomerContact
from handlers.replies import reply_to_payload
from handlers.tasks import card_rows
from store import fraud, points, pool, stats, tiers
from store import outbox as outbox_store
from store import quota as quota_store
from store import tasks as task_store
from store.db import Database
from store.members import active_admins, active_members_of, member_by_id, members_by_ids
from store.pool_rules import rule_book
from store.models import utcnow
from store.runs import claim_run

log = logging.getLogger(__name__)
RETENTION_FIRST_DELAY_SECONDS = 300.0


async def queue_unasked(session: AsyncSession, config: Config, purpose: str, rows: list[quota_store.Row],
                        what: str) -> Queued:
    """Queue what a job sends by itself within WeCom's daily send quota, less the share kept for
    replies ([wecom] reply_headroom); the rest is deferred (store/quota.py) and sent by
    release_deferred_messages when there is room. Pass the result to count_deferred after the commit."""
    queued_now, deferred, quota = await quota_store.queue_unasked(
        session, now=utcnow(), rules=config.wecom, purpose=purpose, rows=rows)
    return Queued(purpose, queued_now, deferred, quota, what)


async def send_due_reminders(db: Database, commands: CommandTable, config: Config) -> int:
    """Remind members who have not shared, once per task, a configured time before its deadline,
    earliest deadline first, as far as WeCom's daily send quota goes: the rest are deferred (kept in
    the outbox, sent by release_deferred_messages when the quota has room). How many were queued now."""
    reminded = 0
    horizon = utcnow() + timedelta(hours=config.tasks.remind_before_hours)
    async with db.session() as session:
        due = sorted(await task_store.tasks_due_for_auto_reminder(session, horizon), key=lambda t: (t.deadline, t.id))
    for task_id in [task.id for task in due]:
        async with db.session() as session:
            # A card that arrived minutes ago needs no reminder yet: wait (the next tick looks again).
            members = await task_store.unshared_recipients(
                session, task_id, sent_before=utcnow() - timedelta(hours=config.tasks.reminder_min_age_hours))
            if not members:
                continue
            # The quota's lock before the claim: every transaction that spends the quota takes it first.
            quota = await quota_store.hold_quota(session, now=utcnow(), rules=config.wecom)
            if not await task_store.claim_auto_reminder(session, task_id):
                continue  # another instance took it
            task = await task_store.get_task(session, task_id)
            purpose, rows = await card_rows(session, task, members, commands, config.server.timezone,
                                            reminder=True, automatic=True, now=utcnow())
            queued_now, deferred = await quota_store.queue_within(session, quota.left, task_id=task_id,
                                                                  purpose=purpose, rows=rows)
        log.info("automatic reminder for task %d queued for %d member(s)", task_id, queued_now)
        what = f"automatic reminder for task {task_id}"
        reminded += count_deferred(Queued(purpose, queued_now, deferred, quota, what))
    return reminded


async def release_deferred_messages(db: Database, config: Config) -> int:
    """Messages deferred past WeCom's daily send quota go out as it has room again (the next day in
    China, or sooner if sends failed), in store.quota.release_deferred's order; those no longer worth
    sending (store.quota's rules: task over, shared since, a past day's digest, ...) are dropped with
    the reason. How many were released."""
    now = utcnow()
    async with db.session() as session:
        if not await quota_store.any_deferred(session):
            return 0
        quota = await quota_store.hold_quota(session, now=now, rules=config.wecom)
        dropped = await quota_store.drop_stale_deferred(session, now, config.server.timezone)
        released = await quota_store.release_deferred(session, quota.left, now)
    if dropped:
        QUOTA_DEFERRED_DROPPED.inc(dropped)
        log.warning("%d deferred message(s) dropped, no longer worth sending when the quota had room "
                    "(the reason is on each outbox row)", dropped)
    if released:
        log.info("%d deferred message(s) released within today's WeCom send quota", released)
    return released


async def expire_parked_messages(db: Database, config: Config) -> int:
    """Messages WeChat refused outside its 48-hour window wait for the follower; after
    [wechat] waiting_days they are dropped, also for followers who never write again."""
    async with db.session() as session:
        return await outbox_store.expire_waiting(session, config.wechat.waiting_days)


async def recycle_idle_leads(db: Database, config: Config) -> int:
    """Leads without a follow-up for their pool's `idle_days` go back to that pool (holder told); a
    warning goes out a day before. A lead protected for its sharer (`protect_days`) stays theirs
    until the protection ends, and the warning comes the day before that instead. Conditional
    updates and unique message keys make each happen once. Both notices are within WeCom's daily
    send quota (queue_unasked)."""
    now = utcnow()
    async with db.session() as session:
        book = await rule_book(session, config.pool_rules)
        # One query with the loosest cut-off (warnings included); each lead then meets its own pool's.
        candidates = await pool.idle_leads(session, now - timedelta(days=book.shortest_idle_days - 1),
                                           protected_before=now + timedelta(days=1))
        holders = await members_by_ids(session, [lead.owner_id for lead in candidates])
    recycled, warnings, told = 0, [], []
    for lead in candidates:
        rules = book.of(pool.home_pool(lead))
        idle_days, idle_before = rules.idle_days, now - timedelta(days=rules.idle_days)
        last, due = pool.last_activity(lead), pool.recycle_due(lead, rules)
        holder = holders.get(lead.owner_id)
        if due > now:
            if holder is not None and due <= now + timedelta(days=1):
                # One warning per idle stretch: the key names the last activity it warns about.
                warnings.append((holder.userid, f"idlewarn:{lead.id}:{last.isoformat()}",
                                 reply_to_payload(notices.idle_warning(lead))))
            continue
        async with db.session() as session:
            if not await pool.recycle(session, lead, idle_before):
                continue
            if holder is not None:
                # Written deferred with the recycle (so never lost), and let go below in one count of
                # the quota for the whole run: a count per lead took ~40 ms with 20,000 sends today.
                key = f"recycled:{lead.id}:{now.isoformat()}"
                if await task_store.queue_messages(session, task_id=None, purpose=quota_store.RECYCLED, rows=[
                        (holder.userid, key, reply_to_payload(notices.recycled(lead, idle_days)))],
                        status=quota_store.DEFERRED):
                    told.append(key)
            recycled += 1
    if told:
        async with db.session() as session:
            quota = await quota_store.hold_quota(session, now=utcnow(), rules=config.wecom)
            released = await quota_store.release_deferred(session, quota.left, utcnow(), keys=told)
        count_deferred(Queued(quota_store.RECYCLED, released, len(told) - released, quota, "recycled-lead notices"))
    if warnings:
        async with db.session() as session:
            queued = await queue_unasked(session, config, quota_store.IDLE_WARNING, warnings, "idle-lead warnings")
        count_deferred(queued)
    return recycled


async def remind_nurturing(db: Database, config: Config) -> int:
    """On a nurturing lead's next-contact date, tell its holder, with its recent history and the
    open tasks whose content they could send (once per date: the message key names it), within
    WeCom's daily send quota (queue_unasked). How many prompts were due."""
    now = utcnow()
    rows = []
    async with db.session() as session:
        for lead in await pool.due_for_contact(session, now):
            holder = await member_by_id(session, lead.owner_id)
            if holder is None or lead.next_contact_at is None:
                continue
            recent = (await pool.history(session, lead.id))[-3:]
            tasks = [task for task, _ in await task_store.tasks_for_member(session, holder)][:3]
            text = notices.time_to_contact(lead, recent, tasks, config.server.timezone)
            rows.append((holder.userid, pool.nurture_key(lead.id, lead.next_contact_at), reply_to_payload(text)))
        queued = await queue_unasked(session, config, quota_store.NURTURE, rows, "nurturing prompts")
    count_deferred(queued)
    return len(rows)


async def send_daily_digest(db: Database, config: Config, now: datetime | None = None) -> int:
    """Yesterday's funnel and top partners to every admin, from [stats] digest_hour on; the
    message keys name the day, so it goes out once a day however many instances run this. Within
    WeCom's daily send quota (queue_unasked); how many were queued now."""
    now = now or utcnow()
    local = now.astimezone(ZoneInfo(config.server.timezone))
    if not config.stats.digest_enabled or local.hour < config.stats.digest_hour:
        return 0
    day = local.date() - timedelta(days=1)
    async with db.session() as session:
        admins = await active_admins(session)
        keys = {admin.id: f"digest:{day.isoformat()}:{admin.id}" for admin in admins}
        if not admins or await outbox_store.count_keys(session, list(keys.values())) == len(admins):
            return 0  # nobody to tell, or done today
        period = stats.Period(day, day, config.server.timezone, day.isoformat())
        funnel = await stats.funnel(session, stats.Scope(), period)
        partners = stats.ranked(await stats.partner_standings(session, await stats.member_standings(session, period)),
                                "unique_clicks")[:5]
        text = notices.daily_digest(day, funnel, partners)
        queued = await queue_unasked(session, config, quota_store.DIGEST, [
            (admin.userid, keys[admin.id], reply_to_payload(text)) for admin in admins], f"digest of {day}")
    return count_deferred(queued)


async def recalculate_tiers(db: Database, config: Config, now: datetime | None = None) -> int:
    """Once a month (from [tiers] recalc_day, at [stats] digest_hour): every partner's tier from its
    recent figures; each change is announced to the partner's members and summed up for admins."""
    now = now or utcnow()
    local = now.astimezone(ZoneInfo(config.server.timezone))
    if local.day < config.tiers.recalc_day or local.hour < config.stats.digest_hour:
        return 0
    month = local.strftime("%Y-%m")
    async with db.session() as session:
        if not await claim_run(session, "tiers", month):
            return 0  # another instance did this month's (a failure rolls the claim back with it)
        changes = await tiers.recalculate(session, config.tiers, config.server.timezone, local.date())
        rows, queued = [], NOTHING_QUEUED
        for change in changes:
            text = notices.tier_changed(change, config.tiers.window_days)
            members = await active_members_of(session, change.partner.id)
            rows += [(m.userid, f"tier:{month}:{change.partner.id}:{m.id}", reply_to_payload(text)) for m in members]
        if changes:
            summary = notices.tier_summary(month, changes)
            admins = await active_admins(session)
            rows += [(a.userid, f"tier:{month}:admin:{a.id}", reply_to_payload(summary)) for a in admins]
            queued = await queue_unasked(session, config, quota_store.TIER, rows, f"tier changes of {month}")
    count_deferred(queued)
    log.info("tiers for %s: %d change(s)", month, len(changes))
    return len(changes)


async def accrue_points(db: Database, config: Config) -> int:
    """Bring the incentive ledger in line with the events (idempotent: entries have unique refs)."""
    async with db.session() as session:
        return await points.accrue(session, config.points, config.server.timezone)


async def send_monthly_statements(db: Database, config: Config, now: datetime | None = None) -> int:
    """On the 1st (from digest_hour): each partner member's points and commission of last month."""
    now = now or utcnow()
    local = now.astimezone(ZoneInfo(config.server.timezone))
    if local.hour < config.stats.digest_hour:
        return 0
    last_month = (local.date().replace(day=1) - timedelta(days=1)).replace(day=1)
    key = last_month.strftime("%Y-%m")
    async with db.session() as session:
        if not await claim_run(session, "statements", key):
            return 0
        await points.accrue(session, config.points, config.server.timezone, now)
        start = points.month_start(last_month, config.server.timezone)
        end = points.month_start(local.date(), config.server.timezone)
        rows = []
        for member_id, userid, earned, commission in await points.totals_by_member(session, start, end):
            text = notices.monthly_statement(key, earned, commission)
            rows.append((userid, f"statement:{key}:{member_id}", reply_to_payload(text)))
        queued = await queue_unasked(session, config, quota_store.STATEMENT, rows, f"statements of {key}")
    count_deferred(queued)
    return len(rows)


async def scan_for_fraud(db: Database, config: Config) -> int:
    """Run the fraud rules; admins hear about new flags (at most one notice per scan)."""
    queued = NOTHING_QUEUED
    async with db.session() as session:
        flags = await fraud.scan(session, config.fraud, config.server.timezone)
        if flags:
            text = notices.new_flags(len(flags))
            admins = await active_admins(session)
            queued = await queue_unasked(session, config, quota_store.FRAUD_FLAGS, [
                (a.userid, f"flags:{flags[0].id}:{a.id}", reply_to_payload(text)) for a in admins], "fraud notice")
    count_deferred(queued)
    return len(flags)


@dataclass(frozen=True)
class Job:
    name: str  # the `job` label of partnerbot_job_runs_total
    run: Callable[[], Awaitable[object]]
    every: float  # seconds
    first_delay: float = 0.0


def schedule(db: Database, config: Config, commands: CommandTable, kick_outbox: Callable[[], None],
             customers: CustomerContact | None = None, retention: RetentionJob | None = None) -> list[Job]:
    """Every clock-driven job, how often it runs, and whether what it queued should go out now."""
    retention = retention or RetentionJob(db, config.retention, config.retention.check_seconds)

    async def reminders() -> None:
        if await release_deferred_messages(db, config) + await send_due_reminders(db, commands, config):
            kick_outbox()

    async def recycling() -> None:
        await recycle_idle_leads(db, config)
        await remind_nurturing(db, config)
        await expire_parked_messages(db, config)
        kick_outbox()

    async def digest_and_tiers() -> None:
        if await send_daily_digest(db, config) + await recalculate_tiers(db, config) \
                + await send_monthly_statements(db, config):
            kick_outbox()

    async def fraud_scan() -> None:
        if await scan_for_fraud(db, config):
            kick_outbox()

    jobs = [
        Job("reminders", reminders, config.tasks.reminder_check_seconds),
        Job("recycling", recycling, config.pool.recycle_check_seconds),
        # Not at start-up but one interval later: the clock-driven jobs then do not fire in every
        # short-lived process (a test, a one-off) that happens to start after the digest hour.
        Job("digest and tiers", digest_and_tiers, config.stats.digest_check_seconds,
            first_delay=config.stats.digest_check_seconds),
        Job("points", lambda: accrue_points(db, config), config.points.accrue_check_seconds),
        Job("fraud scan", fraud_scan, config.fraud.scan_check_seconds),
        # A few minutes after start-up, not at once: a one-off process deletes nothing.
        Job("retention", retention.run, config.retention.check_seconds,
            first_delay=min(RETENTION_FIRST_DELAY_SECONDS, config.retention.check_seconds)),
    ]
    if customers is not None:  # only where the bot has WeCom
        reader = customers

        async def forward_results() -> None:
            await send_forwards(db, reader)  # any a crash left pending after their commit
            await read_forward_results(db, reader)
            kick_outbox()

        jobs.append(Job("forward results", forward_results, config.wecom.forward_check_seconds))
    return jobs


async def run_periodically(name: str, job: Callable[[], Awaitable[object]], interval: float, stop: asyncio.Event,
                           first_delay: float = 0.0) -> None:
    """Run `job` every `interval` until `stop` is set; a stop never interrupts a run half-way."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), first_delay)
    while not stop.is_set():
        try:
            await job()
            JOB_RUNS.labels(name, "ok").inc()
        except Exception:
            JOB_RUNS.labels(name, "failed").inc()
            log.exception("job %s failed; it runs again in %.0f s", name, interval)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
