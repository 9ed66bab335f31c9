"""Benchmark: the retention job on PostgreSQL, and what its inbox index costs a callback.

1. Deleting: N old processed inbox rows (from S senders) and N old sent outbox replies, deleted by
   the retention job (batches of 1,000, one transaction each), against the same rows deleted by two
   bare `DELETE ... WHERE` statements (one transaction, no kept rows checked) on a copy in the same run.
2. The index it adds (ix_inbox_sender): inbox inserts, one per transaction as callbacks store them,
   with the index against without it, in the same run.

    python bench/retention.py --database postgresql+asyncpg://root@127.0.0.1:5432/test
"""
from __future__ import annotations

import argparse
import asyncio
import time

from sqlalchemy import text

from common import BenchDatabase, summary

from bot.retention import RetentionJob
from store import inbox as inbox_store
from store.db import Database
from store.retention import RetentionSettings

FILL = [
    "INSERT INTO inbox (channel, dedupe_key, user_id, payload, status, attempts, received_at, processed_at) "
    "SELECT 'wecom', :prefix || g, 'u' || (g % :senders), '{{}}', 'done', 1, now() - interval '40 days', "
    "now() - interval '40 days' FROM generate_series(1, :rows) g",
    "INSERT INTO outbox (channel, recipient, kind, payload, purpose, status, attempts, next_attempt_at, created_at, sent_at) "
    "SELECT 'wecom', 'u' || (g % :senders), 'text', '{{}}', 'reply', 'sent', 1, now() - interval '40 days', "
    "now() - interval '40 days', now() - interval '40 days' FROM generate_series(1, :rows) g",
    "ANALYZE",
]
BARE = [
    "DELETE FROM outbox WHERE status IN ('sent', 'failed') AND created_at < now() - interval '30 days'",
    "DELETE FROM inbox WHERE status IN ('done', 'failed') AND received_at < now() - interval '30 days'",
]


async def fill(db: Database, rows: int, senders: int, prefix: str) -> None:
    async with db.session() as session:
        for statement in FILL:
            values = {"rows": rows, "senders": senders, **({"prefix": prefix} if ":prefix" in statement else {})}
            await session.execute(text(statement.replace("{{}}", "{}")), values)


async def deleting(url: str, rows: int, senders: int) -> tuple[float, float, int]:
    db = Database(url)
    try:
        await fill(db, rows, senders, "first")
        started = time.perf_counter()
        deleted = await RetentionJob(db, RetentionSettings(max_batches=100_000), 3600).run()
        job = time.perf_counter() - started
        await fill(db, rows, senders, "second")  # the same rows again, beside the newest ones the job kept
        started = time.perf_counter()
        async with db.session() as session:
            for statement in BARE:
                await session.execute(text(statement))
        bare = time.perf_counter() - started
    finally:
        await db.dispose()
    return job, bare, deleted["inbox"] + deleted["outbox"]


async def inserting(url: str, inserts: int) -> tuple[float, float]:
    db = Database(url)
    try:
        timings = {}
        for label in ("with index", "without index", "with index again"):
            if label == "without index":
                async with db.session() as session:
                    await session.execute(text("DROP INDEX ix_inbox_sender"))
            if label == "with index again":
                async with db.session() as session:
                    await session.execute(text("CREATE INDEX ix_inbox_sender ON inbox (channel, user_id, id)"))
            started = time.perf_counter()
            for n in range(inserts):
                async with db.session() as session:
                    await inbox_store.add(session, channel="wecom", dedupe_key=f"{label}{n}", user_id=f"u{n % 500}",
                                          payload={"text": "帮助"})
            timings[label] = time.perf_counter() - started
            print(f"  {inserts} inbox inserts {label}: {timings[label]:.2f} s")
    finally:
        await db.dispose()
    with_index = min(timings["with index"], timings["with index again"])
    return inserts / with_index, inserts / timings["without index"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--senders", type=int, default=2_000)
    parser.add_argument("--inserts", type=int, default=2_000)
    args = parser.parse_args()
    bench = await BenchDatabase.create(args.database)
    try:
        await bench.seed([])
        job, bare, deleted = await deleting(bench.url, args.rows, args.senders)
        print(f"retention job: {deleted:,} rows in {job:.2f} s; bare DELETEs: {bare:.2f} s "
              f"(the job keeps each sender's newest message: {args.senders:,} of them)")
        summary("retention: rows deleted", deleted / job, "rows/s", deleted / bare, "rows/s (bare DELETE)", bare / job)
        with_index, without = await inserting(bench.url, args.inserts)
        summary("retention: inbox inserts with ix_inbox_sender", with_index, "inserts/s", without,
                "inserts/s (without it)", with_index / without)
    finally:
        await bench.drop()


if __name__ == "__main__":
    asyncio.run(main())
