"""Benchmark: one task broadcast to 10,000 members through a real `partnerbot serve` and the simulator,
with WeCom's per-member limits in force (the simulator drops excess silently, as WeCom does).

Prints the wall time from the confirmed `broadcast` to the last card received, the minimum time
WeCom's limits allow, a bare aiohttp loop sending the same bodies to the same simulator at the same
concurrency (the baseline that means something, DESIGN §10), ratios, duplicates and failures.

    python bench/broadcast.py --database postgresql+asyncpg://root@127.0.0.1:5432/test \\
                              --redis redis://127.0.0.1:6379/0
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from common import BenchDatabase, BotAndSimulator, MemberRow, cpu_seconds, summary

from store.db import Database
from store.models import OutboxMessage


async def run(args: argparse.Namespace) -> None:
    db = await BenchDatabase.create(args.database)
    members = [MemberRow(0, f"m{i:05d}", f"成员{i}", "partner", f"伙伴{i % 50}", "华东", ())
               for i in range(args.members)] + [MemberRow(0, "marketer", "市场", "marketer", "", "", ())]
    await db.seed(members)
    directory = {m.userid: m.name for m in members}
    try:
        async with BotAndSimulator(db.url, args.redis, directory,
                                   PARTNERBOT_OUTBOX_CONCURRENCY=str(args.concurrency)) as stack:
            sim = stack.sim
            sim.send_latency = args.latency_ms / 1000
            await sim.send_text("marketer", "newtask 双十二大促 | https://brand.example/d12")
            await sim.wait_for_bot_messages("marketer", 1, timeout=30)
            seen, received_cards, queued, queued_cpu = len(sim.entries), 0, None, float("nan")
            # CPU, not only wall time: on a shared machine the wall time is mostly other people's work.
            # (Under BENCH_PROFILE the pid is py-spy's, and the bot's CPU is not measured.)
            bot_cpu = cpu_seconds(stack.bot.pid) if not stack.profile else float("nan")
            sim_cpu = time.process_time()
            started = time.perf_counter()
            delivery = await sim.send_text("marketer", "broadcast 1 all confirm")
            assert delivery.acknowledged
            # Only the entries new since the last look: rescanning 10,000 would load this process.
            while received_cards < args.members:
                if time.perf_counter() - started > args.timeout:
                    break
                await asyncio.sleep(0.02)
                new, seen = sim.entries[seen:], len(sim.entries)
                for entry in new:
                    if entry.direction != "bot":
                        continue
                    if entry.msgtype == "template_card":
                        received_cards += 1
                    elif entry.userid == "marketer" and queued is None:
                        queued = time.perf_counter() - started
                        queued_cpu = cpu_seconds(stack.bot.pid) - bot_cpu if not stack.profile else float("nan")
            wall = time.perf_counter() - started
            bot_cpu = (cpu_seconds(stack.bot.pid) if not stack.profile else float("nan")) - bot_cpu
            sim_cpu = time.process_time() - sim_cpu
            cards = Counter(e.userid for e in sim.bot_messages() if e.msgtype == "template_card")
            bodies = [dict(e.body) for e in sim.bot_messages() if e.msgtype == "template_card"]
            check = Database(db.url)
            async with check.session() as session:
                failed = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                              .where(OutboxMessage.status == "failed"))
            await check.dispose()

            # Baseline: the same bodies, a bare aiohttp loop, the same simulator and concurrency.
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{stack.sim_url}/cgi-bin/gettoken",
                                    params={"corpid": stack.corp, "corpsecret": stack.secret}) as r:
                    token = (await r.json())["access_token"]
                sim.entries.clear()
                queue = [(user, body) for user, body in zip(list(cards), bodies)]

                async def worker() -> None:
                    while queue:
                        user, card = queue.pop()
                        # The bytes the bot sends: UTF-8 JSON, not \u escapes (aiohttp's json=).
                        body = json.dumps({"touser": user, "agentid": stack.agent, "msgtype": "template_card",
                                           "template_card": card}, ensure_ascii=False).encode()
                        async with http.post(f"{stack.sim_url}/cgi-bin/message/send",
                                             params={"access_token": token}, data=body,
                                             headers={"Content-Type": "application/json"}) as response:
                            await response.read()

                base_started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                in_process = time.perf_counter() - base_started

                # The same loop in a process of its own, as the bot is (client and simulator then
                # share the machine, not one event loop): the baseline the ratio is taken against.
                sim.entries.clear()
                job = {"url": f"{stack.sim_url}/cgi-bin/message/send", "token": token, "agent": stack.agent,
                       "concurrency": args.concurrency, "items": [[u, b] for u, b in zip(list(cards), bodies)]}
                child = await asyncio.create_subprocess_exec(sys.executable, str(Path(__file__).with_name("bare_sender.py")),
                                                             stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
                out, _ = await child.communicate(json.dumps(job).encode())
                baseline, baseline_cpu = map(float, out.split())
                assert sum(1 for e in sim.entries if e.msgtype == "template_card") == len(bodies)
    finally:
        await db.drop()

    received = len(cards)
    duplicates = sum(n - 1 for n in cards.values())
    # One card per member: WeCom's per-member limits (30/min, 1,000/h) never bind, and message/send
    # is outside the per-company API limits; the day quota (licences × 200 recipients) is far above.
    minimum = 0.0
    print(f"broadcast benchmark: {args.members} members, sender concurrency {args.concurrency}, "
          f"simulated API latency {args.latency_ms} ms, database {'postgresql' if db.name else 'sqlite'}, "
          f"redis {'yes' if args.redis else 'no'}")
    print(f"  cards received            {received} of {args.members}")
    print(f"  wall time                 {wall:10.2f} s   ({received / wall:.0f} cards/s)")
    print(f"  of which queueing         {queued or float('nan'):10.2f} s   (until the marketer's \"on its way\" reply)")
    print(f"  minimum by WeCom limits   {minimum:10.2f} s   (no limit binds at one card per member; ratio n/a)")
    print(f"  baseline bare aiohttp     {baseline:10.2f} s   ({len(bodies) / baseline:.0f} sends/s, its own process, as the bot)")
    print(f"  the same loop in-process  {in_process:10.2f} s   ({len(bodies) / in_process:.0f} sends/s, sharing the simulator's "
          f"event loop; ratio {wall / in_process:.2f})")
    print(f"  ratio wall/baseline       {wall / baseline:10.2f}")
    per_card, per_send = 1000 * bot_cpu / args.members, 1000 * baseline_cpu / len(bodies)
    print(f"  bot CPU                   {bot_cpu:10.2f} s   ({per_card:.3f} ms a card, everything from the command "
          f"to the last card; the simulator's process used {sim_cpu:.2f} s meanwhile)")
    print(f"  of which until queued     {queued_cpu:10.2f} s   (the command, its rows, and the sends begun meanwhile)")
    print(f"  bare loop CPU             {baseline_cpu:10.2f} s   ({per_send:.3f} ms a send)")
    print(f"  ratio CPU per card        {per_card / per_send:10.2f}")
    summary(f"broadcast to {args.members:,} members", wall, "s", baseline, "s bare aiohttp sends", wall / baseline)
    summary("broadcast, sender CPU per card", per_card, "ms", per_send, "ms bare aiohttp CPU per send",
            per_card / per_send)
    print(f"  duplicates {duplicates}, failures {failed}, dropped by simulated WeCom limits {len(sim.dropped)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite", help="PostgreSQL server URL (a fresh database is made) or sqlite")
    parser.add_argument("--redis", default="")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated message/send round trip")
    parser.add_argument("--timeout", type=float, default=600)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
