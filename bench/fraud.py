"""Benchmark: every fraud rule over 1,000,000 clicks (and 100,000 leads) on PostgreSQL.

The same generated programme as bench/stats.py, plus planted fraud: click floods from one visitor
and one IP, a burst, headless browsers. The scan window is widened to cover all 90 days, so every
click is looked at. Prints the scan time, what was flagged, and the ratio to one
`SELECT count(*)` over the clicks in the same run.

    python bench/fraud.py --database postgresql+asyncpg://root@127.0.0.1:5432/test
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter

from sqlalchemy import text

from common import BenchDatabase, MemberRow, generate_activity, summary

from bot.config import Config
from store import fraud
from store.db import Database

PLANTED = [
    # One visitor hammering one link; one IP hash on another; an hour-long burst; a headless script.
    "INSERT INTO clicks (link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, event_id) "
    "SELECT 11, now() - interval '2 hours' + g * interval '1 second', 'floodvisitor', md5(g::text), 'Mozilla/5.0', '', "
    "false, g = 1, 'pv' || g FROM generate_series(1, 300) g",
    "INSERT INTO clicks (link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, event_id) "
    "SELECT 22, now() - interval '5 hours' + g * interval '1 second', md5('i' || g), 'one-ip', 'Mozilla/5.0', '', "
    "false, true, 'pi' || g FROM generate_series(1, 500) g",
    "INSERT INTO clicks (link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, event_id) "
    "SELECT 33, now() - interval '10 hours' + g * interval '2 seconds', md5('b' || g), md5('bi' || g), 'Mozilla/5.0', '', "
    "false, true, 'pb' || g FROM generate_series(1, 1000) g",
    "INSERT INTO clicks (link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, event_id) "
    "SELECT 44, now() - g * interval '1 minute', md5('h' || g), md5('hi' || g), "
    "'Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0', '', false, true, 'ph' || g FROM generate_series(1, 50) g",
    "ANALYZE",
]


async def run(args: argparse.Namespace) -> None:
    db = await BenchDatabase.create(args.database)
    members = [MemberRow(0, f"m{i:05d}", f"成员{i}", "partner", f"伙伴{i % 50:03d}", "", ()) for i in range(args.members)]
    await db.seed(members)
    store = Database(db.url)
    config = Config()
    config.fraud.scan_window_hours = 24 * 91  # look at every click, not just the last day's
    try:
        await generate_activity(store, tasks=100, links=args.members * 5, clicks=args.clicks, leads=args.leads,
                                wins=args.leads // 10, burst=True)
        async with store.session() as session:
            for statement in PLANTED:
                await session.execute(text(statement))
        baseline, scans, flagged = [], [], Counter()
        for attempt in range(args.repeat):
            async with store.session() as session:
                started = time.perf_counter()
                await session.scalar(text("SELECT count(*) FROM clicks"))
                baseline.append(time.perf_counter() - started)
                started = time.perf_counter()
                flags = await fraud.scan(session, config.fraud, config.server.timezone)
                scans.append(time.perf_counter() - started)
                if attempt == 0:
                    for flag in flags:
                        flagged[f"{flag.rule} ({flag.kind}s)"] += flag.count
                    counts = Counter(f.rule for f in flags)
                await session.rollback()  # every repeat scans the same unflagged data
    finally:
        await store.dispose()
        await db.drop()
    base, scan = statistics.median(baseline) * 1000, statistics.median(scans) * 1000
    print(f"fraud benchmark: {args.clicks:,} clicks + 1,850 planted, {args.leads:,} leads; every rule over all of them; "
          f"database {'postgresql' if db.name else 'sqlite'}")
    print(f"  count(*) over clicks   {base:9.1f} ms   (median of {args.repeat})")
    print(f"  full scan, all rules   {scan:9.1f} ms   {scan / base:6.1f}x count(*)")
    print(f"  flags raised: {dict(counts)}")
    print(f"  items held: {dict(flagged)}")
    summary(f"fraud scan, all rules ({args.clicks:,} clicks)", scan, "ms", base, "ms count(*) clicks", scan / base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="postgresql+asyncpg://root@127.0.0.1:5432/test")
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
