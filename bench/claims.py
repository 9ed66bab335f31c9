"""Benchmark: 200 members claiming from 10,000 pool leads at once on PostgreSQL (or SQLite).

Each member claims random leads (many collide) through the same store code the `claim` command
uses; prints claims/s, refusals, p50/p99 latency, double claims (must be 0), and what each attempt
costs this process: statements sent (each a round trip) and CPU time, which a busy machine disturbs
less than the rates.

Each attempt loads the member and claims between BEGIN and COMMIT, as a chat message's claim does
(there the inbox's transaction also writes the reply).

    python bench/claims.py --database postgresql+asyncpg://root@127.0.0.1:5432/test
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from sqlalchemy import event, func, select

from common import BenchDatabase, MemberRow, percentile, summary

from store import pool
from store.db import Database
from store.members import get_member
from store.models import Lead, LeadEvent


async def run(args: argparse.Namespace) -> None:
    db = await BenchDatabase.create(args.database)
    members = [MemberRow(0, f"m{i:04d}", f"成员{i}", "partner", f"伙伴{i % 20}", "", ()) for i in range(args.members)]
    await db.seed(members)
    # One engine per instance, each with the app's pool (store/db.py) for its 8 messages at once: one
    # engine for all 16 would open and close overflow connections all along, which no instance does.
    stores = [Database(db.url) for _ in range(args.instances)]
    store = stores[0]
    try:
        async with store.session() as session:
            session.add_all([Lead(name=f"客户{i}", company=f"公司{i}", phone=f"139{i:08d}", source="bench")
                             for i in range(args.leads)])
        rules = pool.RuleBook(pool.PoolRules(daily_claim_limit=10**6, max_held=10**6, cooldown_days=30,
                                             return_reason_required=True, embargo_hours=0, timezone="Asia/Shanghai"))
        latencies: list[float] = []
        outcomes = {"claimed": 0, "refused": 0}
        sent = [0]
        for each in stores:
            event.listen(each.engine.sync_engine, "before_cursor_execute", lambda *_: sent.__setitem__(0, sent[0] + 1))

        # As in the app: each instance works on 8 messages at once; --instances of them.
        workers = [asyncio.Semaphore(8) for _ in stores]

        async def member_loop(number: int, userid: str) -> None:
            rng, instance = random.Random(userid), number % len(stores)
            for _ in range(args.attempts):
                lead_id = rng.randint(1, args.leads)
                async with workers[instance]:
                    started = time.perf_counter()
                    await claim_once(stores[instance], userid, lead_id)
                latencies.append(time.perf_counter() - started)

        async def claim_once(instance: Database, userid: str, lead_id: int) -> None:
            async with instance.session() as session:
                member = await get_member(session, userid)
                try:
                    await pool.claim(session, member, lead_id, rules)
                    outcomes["claimed"] += 1
                except pool.Refusal:
                    outcomes["refused"] += 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(member_loop(i, m.userid) for i, m in enumerate(members)))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        async with store.session() as session:
            events = await session.execute(select(LeadEvent.lead_id, func.count()).where(LeadEvent.kind == "claimed")
                                           .group_by(LeadEvent.lead_id).having(func.count() > 1))
            doubles = len(events.all())
            owned = await session.scalar(select(func.count()).select_from(Lead).where(Lead.owner_id.is_not(None)))
    finally:
        for each in stores:
            await each.dispose()
        await db.drop()
    attempts = len(latencies)
    print(f"claims benchmark: {args.members} members, {args.leads} leads, {attempts} claim attempts, "
          f"database {'postgresql' if db.name else 'sqlite'}")
    print(f"  attempts/s                {attempts / wall:10.0f}")
    print(f"  successful claims         {outcomes['claimed']:10d}   refused (taken already) {outcomes['refused']}")
    print(f"  latency p50 / p99         {statistics.median(latencies) * 1000:8.1f} ms / "
          f"{percentile(latencies, 0.99) * 1000:.1f} ms")
    print(f"  leads owned               {owned} (must equal successful claims)")
    print(f"  double claims             {doubles} (must be 0)")
    print(f"  per attempt               {sent[0] / attempts:.1f} statements (besides BEGIN/COMMIT), "
          f"{cpu / attempts * 1000:.2f} ms CPU in this process")
    summary(f"lead claims ({doubles} double)", attempts / wall, "attempts/s")
    summary("lead claim p99", percentile(latencies, 0.99) * 1000, "ms")
    summary("lead claim CPU per attempt", cpu / attempts * 1000, "ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--attempts", type=int, default=25, help="claim attempts per member")
    parser.add_argument("--instances", type=int, default=2, help="bot instances the load stands for")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
