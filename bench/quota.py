"""Benchmark: what keeping WeCom's daily send quota costs the automatic reminder job, on PostgreSQL.

N members got a task card 3 hours ago and have not shared; the task is due its automatic reminder.
1. The job (bot.jobs.send_due_reminders: quota lock and count, the keys already queued, the claim,
   N reminders queued) against the job as it was before the quota (a copy, job_without_quota) on
   other such tasks, run before and after it in the same run.
2. With room for half: the job queues N/2 and defers N/2; then release_deferred_messages lets the
   deferred half go once the quota has room.
Prints wall seconds and this process's CPU seconds (the database's own CPU is not in it).

    python bench/quota.py --database postgresql+asyncpg://root@127.0.0.1:5432/test [--members 10000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import timedelta

from sqlalchemy import select, update

from common import BenchDatabase, MemberRow, cpu_seconds, summary

from bot.config import Config
from bot.jobs import release_deferred_messages, send_due_reminders
from handlers import command_table
from handlers.tasks import card_rows
from store import quota as quota_store
from store import tasks as task_store
from store.db import Database
from store.models import Member, OutboxMessage, utcnow


async def due_task(db: Database, title: str) -> int:
    """A task whose card every member got 3 hours ago, due its automatic reminder."""
    async with db.session() as session:
        task = await task_store.create_task(session, title=title, url="https://brand.example/q", creator=None,
                                            status="active")
        task.deadline = utcnow() + timedelta(hours=3)
        members = list(await session.scalars(select(Member).where(Member.role == "partner")))
        purpose, rows = await card_rows(session, task, members, command_table(), "Asia/Shanghai",
                                        reminder=False, automatic=False, now=utcnow())
        await task_store.queue_messages(session, task_id=task.id, purpose=purpose, rows=rows)
        # Sent yesterday (China time) as far as the quota goes, so only the room set below counts.
        await session.execute(update(OutboxMessage).where(OutboxMessage.task_id == task.id)
                              .values(status="sent", sent_at=utcnow() - timedelta(days=2)))
        return task.id


async def timed(work) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    cpu, wall = cpu_seconds(os.getpid()), time.perf_counter()
    result = await work
    return time.perf_counter() - wall, cpu_seconds(os.getpid()) - cpu, result


async def job_without_quota(db: Database, config: Config) -> int:
    """bot.jobs.send_due_reminders as it was before the quota (main at 046061c), for the baseline."""
    reminded = 0
    horizon = utcnow() + timedelta(hours=config.tasks.remind_before_hours)
    async with db.session() as session:
        due = [task.id for task in await task_store.tasks_due_for_auto_reminder(session, horizon)]
    for task_id in due:
        async with db.session() as session:
            members = await task_store.unshared_recipients(
                session, task_id, sent_before=utcnow() - timedelta(hours=config.tasks.reminder_min_age_hours))
            if not members or not await task_store.claim_auto_reminder(session, task_id):
                continue
            task = await task_store.get_task(session, task_id)
            purpose, rows = await card_rows(session, task, members, command_table(), config.server.timezone,
                                            reminder=True, automatic=True, now=utcnow())
            reminded += await task_store.queue_messages(session, task_id=task.id, purpose=purpose, rows=rows)
    return reminded


async def run(args: argparse.Namespace) -> None:
    bench = await BenchDatabase.create(args.database)
    n = args.members
    await bench.seed([MemberRow(0, f"m{i:05d}", f"成员{i}", "partner", f"伙伴{i % 20}", "", ()) for i in range(n)])
    db = Database(bench.url)
    config = Config(source="bench")
    config.wecom.licensed_accounts = 10 * n  # room for all
    try:
        # The job before the quota, the job, the job before again (each on its own task): the
        # baseline is the faster of the two.
        await due_task(db, "before")
        bare_wall, bare_cpu, bare = await timed(job_without_quota(db, config))
        assert bare == n, bare
        await due_task(db, "job")
        job_wall, job_cpu, queued = await timed(send_due_reminders(db, command_table(), config))
        assert queued == n, queued
        await due_task(db, "before again")
        again_wall, again_cpu, bare = await timed(job_without_quota(db, config))
        assert bare == n, bare
        bare_wall, bare_cpu = min(bare_wall, again_wall), min(bare_cpu, again_cpu)
        print(f"automatic reminder to {n:,}: job {job_wall:.2f} s wall, {job_cpu:.2f} s CPU; "
              f"the job before the quota (the faster of two) {bare_wall:.2f} s wall, {bare_cpu:.2f} s CPU")
        summary("quota: automatic reminder job, CPU per 1,000", 1000 * job_cpu / n, "CPU s",
                1000 * bare_cpu / n, "CPU s (job before the quota)", job_cpu / bare_cpu if bare_cpu else None)
        summary("quota: automatic reminder job, wall", job_wall, "s", bare_wall, "s (job before the quota)", job_wall / bare_wall)

        half_task = await due_task(db, "half")
        accounts = max(1, n // 200)
        config.wecom.licensed_accounts = accounts
        async with db.session() as session:  # today's quota used up but for half the reminders (and the replies' share)
            await session.execute(update(OutboxMessage).where(OutboxMessage.status == "pending")
                                  .values(status="sent", sent_at=utcnow() - timedelta(days=2)))
            await task_store.queue_messages(session, task_id=None, purpose="notice", rows=[
                (f"x{i}", f"fill:{i}", {"kind": "text", "content": "x"})
                for i in range(200 * accounts - quota_store.kept_for_replies(200 * accounts, config.wecom.reply_headroom)
                               - n // 2)])
            await session.execute(update(OutboxMessage).where(OutboxMessage.status == "pending")
                                  .values(status="sent", sent_at=utcnow()))
            assert (await quota_store.hold_quota(session, now=utcnow(), rules=config.wecom)).left == n // 2
        defer_wall, defer_cpu, queued = await timed(send_due_reminders(db, command_table(), config))
        async with db.session() as session:
            deferred = (await session.execute(select(OutboxMessage.id).where(
                OutboxMessage.task_id == half_task, OutboxMessage.status == quota_store.DEFERRED))).all()
        print(f"room for {n // 2:,}: the job queued {queued:,} and deferred {len(deferred):,} in {defer_wall:.2f} s "
              f"({defer_cpu:.2f} s CPU)")
        config.wecom.licensed_accounts = 10 * n  # room again
        release_wall, release_cpu, released = await timed(release_deferred_messages(db, config))
        print(f"released {released:,} deferred in {release_wall:.2f} s ({release_cpu:.2f} s CPU)")
        summary("quota: deferred released", release_wall, "s", None, "", None)
    finally:
        await db.dispose()
        await bench.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--members", type=int, default=10_000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
