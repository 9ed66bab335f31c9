"""Benchmark: one `partnerbot serve` against two on the same PostgreSQL + Redis, behind a client that
spreads the load (as a load balancer would). Measures encrypted WeCom callbacks answered per second,
tracked redirects per second and lead claims (`领取 N` in chat, many colliding) answered per second,
and checks the global invariants: every message answered once, every click stored once, no lead
claimed twice.

    python bench/instances.py [--messages 2000] [--redirects 5000] [--claims 2000]

All processes (bots, simulator, load) share this machine's cores, so the ratio shows what a second
instance adds on one box, not on two.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import aiohttp
from sqlalchemy import func, select

from common import BenchDatabase, BotAndSimulator, MemberRow, free_port, summary

from store import links as link_store
from store import tasks as task_store
from store.db import Database
from store.members import get_member
from store.models import Click, Lead, LeadEvent

PG = "postgresql+asyncpg://root@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0"


async def start_extra(stack: BotAndSimulator) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=tempfile.mkdtemp(),
                               env={**stack.env, "PARTNERBOT_SERVER_PORT": str(port),
                                    "PYTHONPATH": os.pathsep.join(sys.path)})
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            try:
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return process, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("an extra instance did not start")


async def spread(urls: list[str], requests: list[tuple[str, str, dict, bytes | None]], concurrency: int,
                 answers: Callable[[str, bytes], object] | None = None) -> float:
    """Send (method, path, headers, body) requests round-robin over the instances; seconds taken.
    `answers(path, body)` gets each answer (a callback's may carry a passive reply, as WeCom's do)."""
    targets = itertools.cycle(urls)
    queue = list(requests)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                     connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def worker() -> None:
            while queue:
                method, path, headers, body = queue.pop()
                async with http.request(method, next(targets) + path, headers=headers, data=body,
                                        allow_redirects=False) as response:
                    answer = await response.read()
                    assert response.status in (200, 302), response.status
                if answers is not None:
                    answers(path, answer)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def measure(instances: int, args: argparse.Namespace) -> dict[str, float]:
    db = await BenchDatabase.create(args.database)
    members = [MemberRow(0, f"m{i:05d}", f"Member {i}", "partner", f"Partner {i % 10}", "", ()) for i in range(400)]
    await db.seed(members)
    store = Database(db.url)
    extras: list[subprocess.Popen] = []
    try:
        async with store.session() as session:
            task = await task_store.create_task(session, title="T", url="https://brand.example/t", creator=None,
                                                status="active")
            codes = [(await link_store.get_or_create_link(session, task, await get_member(session, m.userid), "link")).code
                     for m in members]
        async with BotAndSimulator(db.url, args.redis, {m.userid: m.name for m in members}) as stack:
            urls = [stack.bot_url]
            for _ in range(instances - 1):
                process, url = await start_extra(stack)
                extras.append(process)
                urls.append(url)
            sim, now = stack.sim, int(time.time())
            callbacks, senders = [], {}
            for i in range(args.messages):
                query, body = sim.encrypt_callback(sim.text_xml(members[i % len(members)].userid, "help", str(10**15 + i), now))
                callbacks.append(("POST", f"/wecom/callback?{query}", {"Content-Type": "text/xml"}, body))
                senders[callbacks[-1][1]] = members[i % len(members)].userid
            started = time.perf_counter()
            await spread(urls, callbacks, args.concurrency, lambda path, answer: sim.take_answer(senders[path], answer))
            while len(sim.bot_messages()) < args.messages:
                if time.perf_counter() - started > 600:
                    raise SystemExit(f"only {len(sim.bot_messages())} of {args.messages} replies arrived")
                await asyncio.sleep(0.02)
            answered = args.messages / (time.perf_counter() - started)
            await asyncio.sleep(1.0)
            duplicates = len(sim.bot_messages()) - args.messages

            redirects = [("GET", f"/t/{codes[i % len(codes)]}", {"Cookie": stack.visitor_cookie(i), "User-Agent": BROWSER},
                          None) for i in range(args.redirects)]
            seconds = await spread(urls, redirects, args.concurrency)
            for _ in range(300):  # clicks are stored after the answer, through the Redis stream
                async with store.session() as session:
                    stored = await session.scalar(select(func.count()).select_from(Click))
                if stored >= args.redirects:
                    break
                await asyncio.sleep(0.1)

            claimed = await claim_phase(store, sim, urls, members, args)
    finally:
        for process in extras:
            process.terminate()
            process.wait(60)
        await store.dispose()
        await db.drop()
    return {"answered": answered, "duplicates": duplicates, "redirects": args.redirects / seconds,
            "clicks": stored, **claimed}


async def claim_phase(store: Database, sim, urls: list[str], members: list[MemberRow],  # type: ignore[no-untyped-def]
                      args: argparse.Namespace) -> dict[str, float]:
    """Members claim random public-pool leads in chat (about half of the attempts collide)."""
    import random

    leads = args.claims // 2
    async with store.session() as session:
        session.add_all([Lead(name=f"客户{i}", company=f"公司{i}", phone=f"139{i:08d}", source="bench")
                         for i in range(leads)])
    rng, now = random.Random(7), int(time.time())
    async with store.session() as session:
        first = int(await session.scalar(select(func.min(Lead.id))))
    requests, senders = [], {}
    for i in range(args.claims):
        xml = sim.text_xml(members[i % len(members)].userid, f"领取 {first + rng.randrange(leads)}", str(2 * 10**15 + i), now)
        query, body = sim.encrypt_callback(xml)
        requests.append(("POST", f"/wecom/callback?{query}", {"Content-Type": "text/xml"}, body))
        senders[requests[-1][1]] = members[i % len(members)].userid
    before = len(sim.bot_messages())
    started = time.perf_counter()
    await spread(urls, requests, args.concurrency, lambda path, answer: sim.take_answer(senders[path], answer))
    while len(sim.bot_messages()) < before + args.claims:
        if time.perf_counter() - started > 600:
            raise SystemExit(f"only {len(sim.bot_messages()) - before} of {args.claims} claim replies arrived")
        await asyncio.sleep(0.02)
    rate = args.claims / (time.perf_counter() - started)
    async with store.session() as session:
        per_lead = await session.execute(select(LeadEvent.lead_id, func.count()).where(LeadEvent.kind == "claimed")
                                         .group_by(LeadEvent.lead_id))
        counts = [n for _, n in per_lead.all()]
    return {"claims": rate, "claimed": len(counts), "double_claims": sum(1 for n in counts if n > 1)}


async def run(args: argparse.Namespace) -> None:
    one = await measure(1, args)
    two = await measure(2, args)
    print(f"instances benchmark: {args.messages} callbacks, {args.redirects} redirects, PostgreSQL + Redis, "
          f"{os.cpu_count()} cores shared by everything")
    for name, result in (("1 instance", one), ("2 instances", two)):
        print(f"  {name:12s} callbacks answered {result['answered']:7.0f}/s (duplicates {result['duplicates']:.0f})   "
              f"redirects {result['redirects']:7.0f}/s (clicks stored {result['clicks']:.0f} of {args.redirects})   "
              f"claims answered {result['claims']:6.0f}/s ({result['claimed']:.0f} leads claimed, "
              f"{result['double_claims']:.0f} twice)")
    summary("callbacks answered, 2 instances", two["answered"], "msg/s", one["answered"], "msg/s 1 instance",
            two["answered"] / one["answered"])
    summary("redirects, 2 instances", two["redirects"], "/s", one["redirects"], "/s 1 instance",
            two["redirects"] / one["redirects"])
    summary("claims answered, 2 instances", two["claims"], "/s", one["claims"], "/s 1 instance",
            two["claims"] / one["claims"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=PG)
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--redirects", type=int, default=5000)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
