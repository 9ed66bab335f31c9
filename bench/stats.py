"""Benchmark: `report` and `roi` for a month over 1,000,000 clicks, 100,000 leads, 10,000 wins.

The data is generated in the database (PostgreSQL by default) over the last 90 days; the daily
click counts are then built by the same code `partnerbot migrate` uses. Prints the time of the
queries behind `report` (funnel, leaderboards, 14-day trend) and `roi` (linear attribution), the
chart rendering, and the ratio of each to one `SELECT count(*)` over the clicks in the same run.

    python bench/stats.py --database postgresql+asyncpg://root@127.0.0.1:5432/test
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from common import BenchDatabase, MemberRow

from store import attribution, stats
from store.db import Database
from store.models import utcnow

ZONE = "Asia/Shanghai"

# Everything is generated relative to now, in SQL: a million rows through Python would measure Python.
GENERATE = [
    "INSERT INTO tasks (title, description, target_url, poster_template, status, cost, created_at, updated_at) "
    "SELECT '任务' || g, '', 'https://brand.example/' || g, 'classic', 'active', 1000 * (g % 7), now(), now() "
    "FROM generate_series(1, :tasks) g",
    # Each member shares 5 tasks: one link per (task, member).
    "INSERT INTO tracked_links (code, task_id, member_id, channel, created_at) "
    "SELECT left(md5(m.id || '-' || k), 16), 1 + (m.id * 7 + k * 13) % :tasks, m.id, 'link', now() "
    "FROM members m CROSS JOIN generate_series(1, 5) k WHERE m.role = 'partner'",
    "INSERT INTO shares (task_id, member_id, channel, created_at) "
    "SELECT l.task_id, l.member_id, 'link', now() - random() * interval '90 days' FROM tracked_links l, generate_series(1, 2)",
    "INSERT INTO outbox (channel, recipient, kind, payload, dedupe_key, purpose, task_id, status, attempts, "
    "next_attempt_at, created_at, sent_at) SELECT 'wecom', m.userid, 'card', '{}', 'b' || l.id, 'task_card', l.task_id, "
    "'sent', 1, now(), now(), now() - random() * interval '90 days' FROM tracked_links l JOIN members m ON m.id = l.member_id",
    # --spread burst: a link is shared on one day and its clicks fade over the next days (mean 1 day),
    # as shared content does; --spread uniform: any link on any of the 90 days (the worst case).
    "INSERT INTO clicks (link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, event_id) "
    "SELECT link_id, CASE WHEN :burst THEN least(now(), now() - (link_id * 7919 % 90) * interval '1 day' "
    "+ (-ln(1 - random())) * interval '1 day') ELSE now() - random() * interval '90 days' END, "
    "md5(g::text), md5(g::text), 'Mozilla/5.0', '', random() < 0.1, random() < 0.7, 'e' || g "
    "FROM (SELECT g, 1 + (random() * (:links - 1))::int AS link_id FROM generate_series(1, :clicks) g) picked",
    "INSERT INTO leads (name, company, phone, region, industry, source, status, partner_id, task_id, link_id, "
    "visitor_id, won_amount, won_at, claimed_at, created_at, updated_at) "
    "SELECT '客户' || g, '公司' || g, '139' || lpad(g::text, 8, '0'), '', '', 'form:link', "
    "CASE WHEN g <= :wins THEN 'won' WHEN g % 2 = 0 THEN 'claimed' ELSE 'new' END, m.partner_id, l.task_id, l.id, '', "
    "CASE WHEN g <= :wins THEN 1000 + g % 50000 END, NULL, NULL, now() - random() * interval '90 days', now() "
    "FROM generate_series(1, :leads) g JOIN tracked_links l ON l.id = 1 + g % :links JOIN members m ON m.id = l.member_id",
    "UPDATE leads SET won_at = created_at + (now() - created_at) * random() WHERE status = 'won'",
    "INSERT INTO lead_events (lead_id, kind, member_id, note, at) "
    "SELECT id, 'claimed', (SELECT member_id FROM tracked_links WHERE id = leads.link_id), '', created_at "
    "FROM leads WHERE status <> 'new'",
    # 1-4 touches per lead, on links of the same task, before the lead came in.
    "INSERT INTO lead_touches (lead_id, link_id, click_id, kind, at) "
    "SELECT id, 1 + (link_id + k * 101) % :links, NULL, 'click', created_at - k * interval '1 hour' "
    "FROM leads CROSS JOIN generate_series(0, 3) k WHERE k <= id % 4",
    "ANALYZE",
]


def median_time(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def run(args: argparse.Namespace) -> None:
    from bot.charts import render_report  # after common.py put the repository on the path

    db = await BenchDatabase.create(args.database)
    members = [MemberRow(0, f"m{i:05d}", f"成员{i}", "partner", f"伙伴{i % args.partners:03d}", "", ())
               for i in range(args.members)]
    await db.seed(members)
    store = Database(db.url)
    try:
        started = time.perf_counter()
        async with store.session() as session:
            sizes = {"tasks": args.tasks, "links": args.members * 5, "clicks": args.clicks, "leads": args.leads,
                     "wins": args.wins, "burst": args.spread == "burst"}
            for statement in GENERATE:
                await session.execute(text(statement), sizes if ":" in statement else {})
        generated = time.perf_counter() - started
        started = time.perf_counter()
        async with store.session() as session:
            daily_rows = await stats.rebuild_click_daily(session, ZONE)
        rebuilt = time.perf_counter() - started
        async with store.session() as session:
            await session.execute(text("ANALYZE"))

        today = utcnow().astimezone(ZoneInfo(ZONE)).date()
        month = stats.Period(today - timedelta(days=29), today, ZONE, "30 days")
        fortnight = stats.Period(today - timedelta(days=13), today, ZONE, "14 days")
        timings: dict[str, list[float]] = {"count(*) over clicks": [], "report (queries)": [], "  of which funnel": [],
                                           "  of which leaderboards": [], "  of which 14-day trend": [],
                                           "roi linear": [], "chart rendering": []}
        for _ in range(args.repeat):
            async with store.session() as session:
                t0 = time.perf_counter()
                await session.scalar(text("SELECT count(*) FROM clicks"))
                t1 = time.perf_counter()
                funnel = await stats.funnel(session, stats.Scope(), month)
                f1 = time.perf_counter()
                standings = await stats.member_standings(session, month)
                partners = stats.ranked(await stats.partner_standings(session, standings), "unique_clicks")[:10]
                f2 = time.perf_counter()
                series = await stats.trend(session, stats.Scope(), fortnight)
                t2 = time.perf_counter()
                credited = await attribution.attribute(session, month, "linear")
                t3 = time.perf_counter()
            spec = {"title": "统计 · 近 30 天", "funnel": [[s, getattr(funnel, s)] for s in stats.Funnel.STEPS],
                    "trend": {"days": [str(d)[5:] for d in fortnight.days()], "series": series},
                    "leaderboard": {"title": "伙伴排行", "rows": [[p.name, p.unique_clicks] for p in partners]}}
            t4 = time.perf_counter()
            png = await asyncio.to_thread(render_report, spec)
            t5 = time.perf_counter()
            for name, seconds in zip(timings, (t1 - t0, t2 - t1, f1 - t1, f2 - f1, t2 - f2, t3 - t2, t5 - t4)):
                timings[name].append(seconds)
    finally:
        await store.dispose()
        await db.drop()
    baseline = median_time(timings["count(*) over clicks"])
    print(f"stats benchmark: {args.clicks:,} clicks ({args.spread}), {args.leads:,} leads, {args.wins:,} wins, "
          f"{args.members:,} members in {args.partners} partners, {args.tasks} tasks; "
          f"database {'postgresql' if db.name else 'sqlite'}")
    print(f"  generated in {generated:.1f} s; daily click rows rebuilt from the clicks: {daily_rows:,} in {rebuilt:.1f} s")
    print(f"  month funnel: {funnel.as_dict()}")
    print(f"  roi linear: {credited.won_leads} won, revenue {credited.revenue}, unattributed {credited.unattributed}")
    print(f"  {'step':28s} {'median ms':>10s} {'vs count(*)':>12s}   (median of {args.repeat})")
    for name, samples in timings.items():
        print(f"  {name:28s} {median_time(samples):10.1f} {median_time(samples) / baseline:11.2f}x")
    print(f"  chart PNG {len(png):,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="postgresql+asyncpg://root@127.0.0.1:5432/test")
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--wins", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--partners", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--spread", choices=("burst", "uniform"), default="burst",
                        help="how clicks fall over time: after each share (realistic) or evenly (worst case)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
