"""Benchmark: encrypted `help` callbacks through the full path of a real `partnerbot serve` process.

verify → decrypt → de-duplicate → inbox row → route → outbox → the reply in the callback's answer (a
passive reply, when ready within [wecom] passive_reply_seconds) or message/send to the WeCom
simulator. Prints messages/s, acknowledgement latency (p50/p99), how many replies went passive and
active (the simulator's count and the bot's /metrics), and the ratio to a decrypt-and-parse-only loop
over the same callbacks, measured in the same run. `--passive-seconds 0` measures without passive replies.

    python bench/callback.py --database postgresql+asyncpg://root@127.0.0.1:5432/test \\
                             --redis redis://127.0.0.1:6379/0
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from urllib.parse import parse_qsl

import aiohttp

from common import BenchDatabase, BotAndSimulator, MemberRow, cpu_seconds, percentile, summary

from bot.channels.wecom import WeComCodec, read_message
from bot.config import WeComConfig


async def wait_for_replies(sim, count: int, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Until `count` replies arrived; a run that lost some still prints its figures, and how many."""
    deadline = time.monotonic() + timeout
    while len(sim.bot_messages()) < count:
        if time.monotonic() > deadline:
            print(f"  MISSING: only {len(sim.bot_messages())} of {count} replies arrived within {timeout:.0f} s")
            return
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace) -> None:
    db = await BenchDatabase.create(args.database)
    # Enough members that nobody gets near WeCom's 30 messages a minute.
    members = [MemberRow(0, f"m{i:05d}", f"Member {i}", "partner", f"Partner {i % 10}", "", ())
               for i in range(max(100, args.messages // 20))]
    await db.seed(members)
    try:
        env = {} if args.passive_seconds is None else {"PARTNERBOT_WECOM_PASSIVE_REPLY_SECONDS": str(args.passive_seconds)}
        async with BotAndSimulator(db.url, args.redis, {m.userid: m.name for m in members}, **env) as stack:
            sim = stack.sim
            now = int(time.time())
            senders = [members[i % len(members)].userid for i in range(args.messages)]
            callbacks = [sim.encrypt_callback(sim.text_xml(senders[i], "help", str(10**15 + i), now))
                         for i in range(args.messages)]
            url = f"{stack.bot_url}/wecom/callback"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as http:
                for (query, body), userid in zip(callbacks[:20], senders):  # warm up: connections, token, caches
                    async with http.post(f"{url}?{query}", data=body) as response:
                        assert response.status == 200
                        sim.take_answer(userid, await response.read())
                await wait_for_replies(sim, 20)

                queue, latencies, statuses = list(zip(callbacks[20:], senders[20:])), [], {}

                async def worker() -> None:
                    while queue:
                        (query, body), userid = queue.pop()
                        started = time.perf_counter()
                        async with http.post(f"{url}?{query}", data=body) as response:
                            answer = await response.read()
                            statuses[response.status] = statuses.get(response.status, 0) + 1
                        latencies.append(time.perf_counter() - started)
                        # As WeCom does: a passive reply in the answer is shown to the member.
                        error, _ = sim.take_answer(userid, answer)
                        if error:
                            raise SystemExit(error)

                measured = len(queue)
                # `serve`'s own CPU (not the simulator's, PostgreSQL's or Redis's): noise-resistant on a shared box
                cpu_started = cpu_seconds(stack.bot.pid)
                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                acked = time.perf_counter() - started
                await wait_for_replies(sim, args.messages)
                replied = time.perf_counter() - started
                serve_cpu = cpu_seconds(stack.bot.pid) - cpu_started
                async with http.get(f"{stack.bot_url}/metrics") as response:
                    metrics = await response.text()
            replies, dropped = len(sim.bot_messages()), len(sim.dropped)
            passive, active = sim.api_calls["passive"], sim.api_calls["message/send"]
    finally:
        await db.drop()

    # Baseline: verify + decrypt + parse the same callbacks in a loop, nothing else.
    codec = WeComCodec(WeComConfig(corp_id=stack.corp, token=stack.token, encoding_aes_key=stack.aes))
    parsed = [(dict(parse_qsl(q)), b) for q, b in callbacks]
    started = time.perf_counter()
    for query, body in parsed:
        read_message(codec.decrypt(query, body))
    baseline = time.perf_counter() - started

    full_rate, base_rate = measured / replied, len(parsed) / baseline
    print(f"callback benchmark: {measured} messages, concurrency {args.concurrency}, "
          f"database {'postgresql' if db.name else 'sqlite'}, redis {'yes' if args.redis else 'no'}")
    print(f"  HTTP statuses             {statuses}")
    print(f"  acknowledged              {measured / acked:10.0f} msg/s")
    print(f"  answered (reply received) {full_rate:10.0f} msg/s")
    print(f"  ack latency p50           {statistics.median(latencies) * 1000:10.1f} ms")
    print(f"  ack latency p99           {percentile(latencies, 0.99) * 1000:10.1f} ms")
    print(f"  ack latency max           {max(latencies) * 1000:10.1f} ms")
    print(f"  serve CPU per callback    {serve_cpu / measured * 1000:10.2f} ms")
    print(f"  baseline decrypt+parse    {base_rate:10.0f} msg/s")
    print(f"  ratio full path/baseline  {full_rate / base_rate:10.3f}")
    summary("callbacks answered", full_rate, "msg/s", base_rate, "msg/s decrypt+parse", full_rate / base_rate)
    summary("callback ack p99", percentile(latencies, 0.99) * 1000, "ms")
    summary("callback serve CPU", serve_cpu / measured * 1000, "ms/msg")
    print(f"  replies {replies} (duplicates {replies - args.messages}, dropped by WeCom limits {dropped})")
    print(f"  passive replies           {passive:10d}   (in the callback's answer)")
    print(f"  active replies            {active:10d}   (message/send)")
    counted = {line.split("how=\"")[1].split("\"")[0]: float(line.rsplit(" ", 1)[1])
               for line in metrics.splitlines() if line.startswith('partnerbot_replies_total{channel="wecom"')}
    print(f"  /metrics replies          passive {counted.get('passive', 0):.0f}, active {counted.get('active', 0):.0f}")
    summary("callback replies passive", passive / max(passive + active, 1), "share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite", help="PostgreSQL server URL (a fresh database is made) or sqlite")
    parser.add_argument("--redis", default="", help="Redis URL, or empty for none")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--passive-seconds", type=float, default=None,
                        help="[wecom] passive_reply_seconds for the bot (default: its own default; 0 = off)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
