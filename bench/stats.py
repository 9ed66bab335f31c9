"""Benchmark: `report` and `roi` for a month over 1,000,000 clicks, 100,000 leads, 10,000 wins.

The data is generated in the database (PostgreSQL by default) over the last 90 days; the daily
click counts are then built by the same code `partnerbot migrate` uses. Prints the time of the
queries behind `report` (funnel, leaderboards, top content, 14-day trend: one after another, and as
`report` runs them, the leaderboards and trend beside the funnel on PostgreSQL) and `roi` (linear
attribution), the chart rendering, and the ratio of each to one `SELECT count(*)` over the clicks in
the same run. The reply's text goes as soon as the queries are done (time to text); its chart is drawn
after that (time to chart = the whole reply). The chart's CPU time is shown too: on a shared machine it
varies less than its wall-clock time. (The first chart on a thread also builds the thread's figure;
the median of --repeat runs is not swayed by it.)

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

from common import BenchDatabase, MemberRow, generate_activity, summary

from store import attribution, stats
from store.db import Database
from store.models import utcnow

ZONE = "Asia/Shanghai"

def median_time(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def run(args: argparse.Namespace) -> None:
    from bot.render import charts  # after common.py put the repository on the path

    if hasattr(charts, "render_report_async"):  # as bot/channels/media.py draws a chart
        render_report = charts.render_report_async
    else:  # (a checkout from before it, for a same-bench baseline)
        async def render_report(spec: dict) -> bytes:
            return await asyncio.to_thread(charts.render_report, spec)
    try:
        from store.report_figures import ReportFigures, report_figures
        # Since the third round the figures include the top content; before, `report` read it after them.
        content_apart = "content" not in ReportFigures.__dataclass_fields__
    except ImportError:  # (a checkout from before it, for a same-bench baseline)
        report_figures, content_apart = None, True

    db = await BenchDatabase.create(args.database)
    members = [MemberRow(0, f"m{i:05d}", f"成员{i}", "partner", f"伙伴{i % args.partners:03d}", "", ())
               for i in range(args.members)]
    await db.seed(members)
    store = Database(db.url)
    try:
        started = time.perf_counter()
        await generate_activity(store, tasks=args.tasks, links=args.members * 5, clicks=args.clicks,
                                leads=args.leads, wins=args.wins, burst=args.spread == "burst")
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
                                           "  of which leaderboards": [], "  of which top content": [],
                                           "  of which 14-day trend": [], "roi linear": [], "chart rendering": [],
                                           "  its CPU time": [], "whole reply (text + chart)": [],
                                           "report (queries at once)": [], "whole reply, queries at once": []}
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
                await stats.content_standings(session, stats.Scope(), month)
                f3 = time.perf_counter()
                series = await stats.trend(session, stats.Scope(), fortnight)
                t2 = time.perf_counter()
                credited = await attribution.attribute(session, month, "linear")
                t3 = time.perf_counter()
                # What `report` runs now: funnel, leaderboards and trend at once (store/report_figures.py).
                a0 = time.perf_counter()
                if report_figures is not None:
                    await report_figures(session, stats.Scope(), month, fortnight)
                    if content_apart:
                        await stats.content_standings(session, stats.Scope(), month)
                a1 = time.perf_counter()
            spec = {"title": "统计 · 近 30 天", "funnel": [[s, getattr(funnel, s)] for s in stats.Funnel.STEPS],
                    "trend": {"days": [str(d)[5:] for d in fortnight.days()], "series": series},
                    "leaderboard": {"title": "伙伴排行", "rows": [[p.name, p.unique_clicks] for p in partners]},
                    "labels": {"funnel": "转化漏斗", "trend": "近 14 天趋势", "no_data": "暂无数据"}}
            t4, c4 = time.perf_counter(), time.process_time()
            png = await render_report(spec)
            t5, c5 = time.perf_counter(), time.process_time()  # (the event loop idles meanwhile: c5 - c4 is the chart's)
            for name, seconds in zip(timings, (t1 - t0, t2 - t1, f1 - t1, f2 - f1, f3 - f2, t2 - f3, t3 - t2, t5 - t4,
                                               c5 - c4, t2 - t1 + t5 - t4, a1 - a0, a1 - a0 + t5 - t4)):
                timings[name].append(seconds)
    finally:
        await store.dispose()
        await db.drop()
    baseline = median_time(timings["count(*) over clicks"])
    if report_figures is None:
        del timings["report (queries at once)"], timings["whole reply, queries at once"]
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
    for name, label in (("report (queries)", "report, a month: time to text"),
                        ("whole reply (text + chart)", "report, a month: whole reply with chart"),
                        ("report (queries at once)", "report, a month: time to text, queries at once"),
                        ("whole reply, queries at once", "report, a month: whole reply, queries at once"),
                        ("roi linear", "roi linear, a month")):
        if name not in timings:
            continue
        summary(f"{label} ({args.clicks:,} clicks)", median_time(timings[name]), "ms", baseline, "ms count(*) clicks",
                median_time(timings[name]) / baseline)


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
