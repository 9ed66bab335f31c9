"""Benchmark: one `partnerbot serve` against two on the same PostgreSQL + Redis, behind a client that
spreads the load (as a load balancer would). Measures encrypted WeCom callbacks answered per second,
tracked redirects per second and lead claims (`领取 N` in chat, many colliding) answered per second,
and checks the global invariants: every message answered once, every click stored once, no lead
claimed twice.

    python bench/instances.py [--messages 2000] [--redirects 5000] [--claims 2000]

All processes (bots, simulator, load) share this machine's cores, so the rates show what a second
instance adds on one box, not on two. What does carry over to more boxes is the work per unit: the
CPU-seconds all `serve` processes together spend per callback answered, per redirect (its click
stored) and per claim answered, read from /proc. With 2 instances that should stay close to 1's
(the goal is <= 1.1 x): more would mean the instances make work for each other (contention on rows
or keys, duplicate processing, retries).
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

from common import BenchDatabase, BotAndSimulator, MemberRow, cpu_seconds, free_port, summary

from store import links as link_store
from store import tasks as task_store
from store.db import Database
from store.members import get_member
from store.models import Click, Lead, LeadEvent

PG = "postgresql+asyncpg://root@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
RETRIED = [0]  # requests answered 503 and sent again
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
                for attempt in range(4):  # a 503 (the database busy) is retried, as WeCom retries a callback
                    async with http.request(method, next(targets) + path, headers=headers, data=body,
                                            allow_redirects=False) as response:
                        answer = await response.read()
                        if response.status != 503 or attempt == 3:
                            assert response.status in (200, 302), response.status
                            if answers is not None:
                                answers(path, answer)
                            break
                    RETRIED[0] += 1
                    await asyncio.sleep(1.0)

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
            assert stack.bot is not None
            pids = [stack.bot.pid, *(process.pid for process in extras)]

            def cpu() -> float:  # every serve process's CPU-seconds so far
                return sum(cpu_seconds(pid) for pid in pids)

            # What the processes spend doing nothing (their periodic jobs, polling): a second instance
            # doubles it, which is a cost of running two but not contention between them.
            await asyncio.sleep(1.0)
            cpu_before, idle_started = cpu(), time.perf_counter()
            await asyncio.sleep(3.0)
            idle_rate = (cpu() - cpu_before) / (time.perf_counter() - idle_started)
            sim, now = stack.sim, int(time.time())

            senders: dict[str, str] = {}  # callback path -> who sent it, to hand the answer to the simulator

            def callbacks_of(first: int, count: int) -> list[tuple[str, str, dict, bytes | None]]:
                made = []
                for i in range(first, first + count):
                    xml = sim.text_xml(members[i % len(members)].userid, "help", str(10**15 + i), now)
                    query, body = sim.encrypt_callback(xml)
                    made.append(("POST", f"/wecom/callback?{query}", {"Content-Type": "text/xml"}, body))
                    senders[made[-1][1]] = members[i % len(members)].userid
                return made

            def take_answer(path: str, answer: bytes) -> None:
                sim.take_answer(senders[path], answer)

            async def replies(expected: int, started: float) -> None:
                while len(sim.bot_messages()) < expected:
                    if time.perf_counter() - started > 600:
                        raise SystemExit(f"only {len(sim.bot_messages())} of {expected} replies arrived")
                    await asyncio.sleep(0.02)

            async def clicks_stored(expected: int) -> int:
                for _ in range(300):  # clicks are stored after the answer, through the Redis stream
                    async with store.session() as session:
                        stored = int(await session.scalar(select(func.count()).select_from(Click)))
                    if stored >= expected:
                        break
                    await asyncio.sleep(0.1)
                return stored

            # Warm up every instance (connections, prepared statements, the token, each link in its
            # link cache) so that the figures are the steady state's, not each process's first minute.
            warm = 50 * len(urls)
            await spread(urls, callbacks_of(args.messages, warm), args.concurrency, take_answer)
            await replies(warm, time.perf_counter())
            warm_redirects = [("GET", f"/t/{codes[i % len(codes)]}", {"Cookie": stack.visitor_cookie(10**6 + i),
                                                                      "User-Agent": BROWSER}, None)
                              for i in range(len(codes) * len(urls))]
            await spread(urls, warm_redirects, args.concurrency)
            warm_clicks = await clicks_stored(len(warm_redirects))
            await asyncio.sleep(1.0)
            before = len(sim.bot_messages())

            callbacks = callbacks_of(0, args.messages)
            cpu_before = cpu()
            started = time.perf_counter()
            await spread(urls, callbacks, args.concurrency, take_answer)
            await replies(before + args.messages, started)
            answered = args.messages / (time.perf_counter() - started)
            callback_cpu = (cpu() - cpu_before) / args.messages
            callback_idle = idle_rate * (time.perf_counter() - started) / args.messages
            await asyncio.sleep(1.0)
            duplicates = len(sim.bot_messages()) - before - args.messages

            redirects = [("GET", f"/t/{codes[i % len(codes)]}", {"Cookie": stack.visitor_cookie(i), "User-Agent": BROWSER},
                          None) for i in range(args.redirects)]
            cpu_before, started = cpu(), time.perf_counter()
            seconds = await spread(urls, redirects, args.concurrency)
            stored = await clicks_stored(warm_clicks + args.redirects) - warm_clicks
            redirect_cpu = (cpu() - cpu_before) / args.redirects
            redirect_idle = idle_rate * (time.perf_counter() - started) / args.redirects

            cpu_before, started = cpu(), time.perf_counter()
            claimed = await claim_phase(store, sim, urls, members, args)
            claim_cpu = (cpu() - cpu_before) / args.claims
            claim_idle = idle_rate * (time.perf_counter() - started) / args.claims
    finally:
        for process in extras:
            process.terminate()
            process.wait(60)
        await store.dispose()
        await db.drop()
    return {"answered": answered, "duplicates": duplicates, "redirects": args.redirects / seconds,
            "clicks": stored, **claimed, "callback_cpu": callback_cpu, "redirect_cpu": redirect_cpu,
            "claim_cpu": claim_cpu, "callback_net": callback_cpu - callback_idle,
            "redirect_net": redirect_cpu - redirect_idle, "claim_net": claim_cpu - claim_idle, "idle": idle_rate}


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
    for name, result in (("1 instance", one), ("2 instances", two)):
        print(f"  {name:12s} serve CPU per callback {result['callback_cpu'] * 1000:6.2f} ms   "
              f"per redirect {result['redirect_cpu'] * 1e6:6.0f} µs   per claim {result['claim_cpu'] * 1000:6.2f} ms   "
              f"(idle: {result['idle'] * 1000:.0f} ms CPU/s)")
        print(f"  {'':12s} beyond idle   callback {result['callback_net'] * 1000:6.2f} ms   "
              f"per redirect {result['redirect_net'] * 1e6:6.0f} µs   per claim {result['claim_net'] * 1000:6.2f} ms")
    for unit, scale, shown in (("callback", 1000, "ms"), ("redirect", 1e6, "µs"), ("claim", 1000, "ms")):
        for key, extra in ((f"{unit}_cpu", ""), (f"{unit}_net", " beyond idle")):
            summary(f"serve CPU per {unit}{extra}, 2 instances", two[key] * scale, f"{shown} CPU", one[key] * scale,
                    f"{shown} CPU 1 instance", two[key] / one[key])
    print(f"  requests answered 503 and sent again: {RETRIED[0]}")
    ok = one["duplicates"] == two["duplicates"] == 0 and one["double_claims"] == two["double_claims"] == 0 \
        and one["clicks"] == two["clicks"] == args.redirects
    print(f"  invariants: every message answered once, every click stored once, no lead claimed twice: "
          f"{'held' if ok else 'BROKEN'}")
    summary("callbacks answered, 2 instances", two["answered"], "msg/s", one["answered"], "msg/s 1 instance",
            two["answered"] / one["answered"])
    summary("redirects, 2 instances", two["redirects"], "/s", one["redirects"], "/s 1 instance",
            two["redirects"] / one["redirects"])
    summary("claims answered, 2 instances", two["claims"], "/s", one["claims"], "/s 1 instance",
            two["claims"] / one["claims"])
    if not ok:
        raise SystemExit("an invariant broke: see the lines above")


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
