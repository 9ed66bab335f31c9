"""Benchmark: what bringing a new lead's notice under WeCom's daily send quota costs a landing form
submit, on PostgreSQL.

Each submit is the form's transaction as bot/web/landing.py runs it (the lead, its touches, the
notice to the sharer), `--concurrency` at once, with `--sent` messages already sent today. The
notice is queued three ways, alternated in the same run:
  unmetered   as before the quota: outbox.add, claimed (the code before this change);
  locked      the quota's advisory lock and today's count inside the form's transaction;
  released    written deferred with the lead, let go after the commit by bot/web/lead_notices.py
              (what the form does), one count of the quota for the notices that came in meanwhile.
Per submit: wall time of the round (for `released` until every notice is let go), p95 latency of
the form's transaction, and the CPU of this process and of PostgreSQL's backends serving it (read
from /proc: PostgreSQL must run on this machine).

    python bench/lead_notice.py --database postgresql+asyncpg://root@127.0.0.1:5432/test
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from sqlalchemy import select, text

from common import BenchDatabase, cpu_seconds, percentile, summary

from bot.config import Config
from bot.web.lead_notices import LeadNotices, notice_key
from handlers import notices
from handlers.replies import reply_to_payload
from store import leads as lead_store
from store import outbox as outbox_store
from store import quota as quota_store
from store.bindings import MEMBER_CHANNEL
from store.db import Database
from store.members import get_member
from store.models import OutboxMessage, TrackedLink, utcnow
from store.outbox_queue import queue_messages
from store.pool_rules import rule_book

ROUNDS = ("unmetered", "locked", "released") * 2


class NoSender:
    def kick(self) -> None:
        pass


async def fill_today(db: Database, sent: int) -> None:
    now = utcnow()
    async with db.session() as session:
        await session.execute(OutboxMessage.__table__.insert(), [
            {"channel": MEMBER_CHANNEL, "recipient": f"u{i}", "kind": "text", "payload": {"kind": "text"},
             "status": "sent", "attempts": 1, "next_attempt_at": now, "created_at": now, "sent_at": now,
             "purpose": "reply"} for i in range(sent)])


async def backend_cpu(db: Database, name: str) -> float:
    async with db.session() as session:
        pids = list(await session.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
                                          {"name": name}))
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, PermissionError):
            pass
    return total


async def submit(db: Database, config: Config, link: TrackedLink, phone: str, how: str, releases: LeadNotices) -> None:
    form, problems = lead_store.validate_form({"name": "王女士", "company": "华星", "phone": phone, "region": "上海",
                                               "industry": "制造"}, consent=True)
    assert form is not None, problems
    async with db.session() as session:
        sharer = await get_member(session, "sharer")
        lead = await lead_store.create_from_form(session, form, sharer=sharer, task_id=link.task_id, link_id=link.id,
                                                 channel="link", visitor_id=phone,
                                                 book=await rule_book(session, config.pool_rules))
        assert lead is not None
        payload = reply_to_payload(notices.new_lead(lead, link.task_id, "link"))
        if how == "released":
            await queue_messages(session, task_id=None, purpose=quota_store.LEAD_NOTICE,
                                 rows=[(sharer.userid, notice_key(lead.id), payload)], status=quota_store.DEFERRED)
        elif how == "unmetered" or (await quota_store.hold_quota(session, now=utcnow(), rules=config.wecom)).allows(1):
            await outbox_store.add(session, channel=MEMBER_CHANNEL, recipient=sharer.userid, payload=payload,
                                   claimed=True)
    if how == "released":
        releases.committed(notice_key(lead.id), db, NoSender())


async def round_of(db: Database, config: Config, link: TrackedLink, how: str, start: int, submits: int,
                   concurrency: int, pg_name: str) -> dict[str, float]:
    latencies: list[float] = []
    releases = LeadNotices(config.wecom)
    queue = iter(range(start, start + submits))

    async def worker() -> None:
        for i in queue:
            began = time.perf_counter()
            await submit(db, config, link, f"139{i:08d}", how, releases)
            latencies.append(time.perf_counter() - began)

    cpu, pg_cpu, began = cpu_seconds(os.getpid()), await backend_cpu(db, pg_name), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    while releases.releasing is not None and not releases.releasing.done():
        await releases.releasing
    wall = time.perf_counter() - began
    figures = {"wall_ms": 1000 * wall / submits, "p95_ms": 1000 * percentile(latencies, 0.95),
               "cpu_ms": 1000 * (cpu_seconds(os.getpid()) - cpu) / submits,
               "pg_cpu_ms": 1000 * (await backend_cpu(db, pg_name) - pg_cpu) / submits}
    print(f"{how:10s} " + "  ".join(f"{k} {v:7.2f}" for k, v in figures.items()), flush=True)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True, help="a PostgreSQL server URL (a database is made for the run)")
    parser.add_argument("--sent", type=int, default=20000, help="messages sent today before the submits")
    parser.add_argument("--submits", type=int, default=300, help="submits per round")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    bench = await BenchDatabase.create(args.database)
    try:
        await bench.sharer_link("https://brand.example/landing")
        db = Database(bench.url)
        config = Config(source="bench")
        config.wecom.licensed_accounts = 1000  # room for every submit: each is sent at once
        await fill_today(db, args.sent)
        async with db.session() as session:
            link = await session.scalar(select(TrackedLink))
        print(f"{args.sent} sent today; {args.submits} submits a round, {args.concurrency} at once; ms per submit",
              flush=True)
        results: dict[str, list[dict[str, float]]] = {how: [] for how in ROUNDS}
        for n, how in enumerate(ROUNDS):
            results[how].append(await round_of(db, config, link, how, n * args.submits, args.submits,
                                               args.concurrency, bench.name or ""))
        mean = {how: {k: statistics.mean(r[k] for r in runs) for k in runs[0]} for how, runs in results.items()}
        for how in ("released", "locked"):
            for key in ("wall_ms", "p95_ms", "cpu_ms", "pg_cpu_ms"):
                summary(f"lead submit {key} ({how} notice)", mean[how][key], "ms", mean["unmetered"][key],
                        "ms unmetered", mean[how][key] / max(mean["unmetered"][key], 1e-9))
        await db.dispose()
    finally:
        await bench.drop()


if __name__ == "__main__":
    asyncio.run(main())
