"""Benchmark: tracked redirects through a real `partnerbot serve` with click recording on, against a
bare aiohttp 302 handler (also its own process) in the same run; then clicks stored vs. sent.

Both are reported as redirects per second and as CPU-seconds per redirect of the server process
(for `serve` until every click is stored, so recording and writing clicks are included; PostgreSQL's
and Redis's own CPU are not). The load generator shares the machine's cores with the server, so the
rate is capped by the client too: on a busy machine the CPU figure is the steadier of the two.

    python bench/redirect.py --database postgresql+asyncpg://root@127.0.0.1:5432/test \\
                             --redis redis://127.0.0.1:6379/0
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp
from sqlalchemy import func, select

from common import BenchDatabase, BotAndSimulator, cpu_seconds, free_port, percentile, summary

from store.db import Database
from store.models import Click

BARE_SERVER = """
import sys
from aiohttp import web
async def follow(request):
    return web.Response(status=302, headers={"Location": "https://brand.example/landing?utm_source=x"})
app = web.Application()
app.add_routes([web.get("/t/{code}", follow)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0"


async def hammer(url: str, requests: int, concurrency: int,
                 cookie: Callable[[int], str] = lambda i: f"pb_vid=bench{i:016d}") -> tuple[float, list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(requests))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                     connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                # A distinct visitor per request, so flood protection keeps every click.
                async with http.get(url, allow_redirects=False,
                                    headers={"Cookie": cookie(i), "User-Agent": BROWSER}) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, statuses


async def run(args: argparse.Namespace) -> None:
    db = await BenchDatabase.create(args.database)
    code = await db.sharer_link("https://brand.example/landing?x=1")
    setup = Database(db.url)
    try:
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
        try:
            for _ in range(100):  # a busy machine may take a while to start it
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", bare_port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            await hammer(f"http://127.0.0.1:{bare_port}/t/{code}", 500, args.concurrency)  # warm up
            bare_cpu = cpu_seconds(bare.pid)
            bare_time, bare_latencies, _ = await hammer(f"http://127.0.0.1:{bare_port}/t/{code}",
                                                        args.requests, args.concurrency)
            bare_cpu = cpu_seconds(bare.pid) - bare_cpu
        finally:
            bare.terminate()
            bare.wait(10)

        async with BotAndSimulator(db.url, args.redis, {"sharer": "分享者"}) as stack:
            url = f"{stack.bot_url}/t/{code}"
            assert stack.bot is not None
            await hammer(url, 500, args.concurrency, lambda i: stack.visitor_cookie(args.requests + i))  # warm up
            while True:  # its clicks written, so that only the measured ones are counted below
                async with setup.session() as session:
                    if int(await session.scalar(select(func.count()).select_from(Click))) >= 500:
                        break
                await asyncio.sleep(0.2)
            cpu = cpu_seconds(stack.bot.pid)
            wall, latencies, statuses = await hammer(url, args.requests, args.concurrency, stack.visitor_cookie)
            sent = args.requests
            deadline = time.monotonic() + 120
            while True:  # wait until the buffer is written
                async with setup.session() as session:
                    stored = int(await session.scalar(select(func.count()).select_from(Click))) - 500
                if stored >= sent or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            cpu = cpu_seconds(stack.bot.pid) - cpu
    finally:
        await setup.dispose()
        await db.drop()

    rate, bare_rate = sent / wall, args.requests / bare_time
    print(f"redirect benchmark: {sent} requests, concurrency {args.concurrency}, "
          f"database {'postgresql' if db.name else 'sqlite'}, redis {'yes' if args.redis else 'no'}")
    print(f"  HTTP statuses            {statuses}")
    print(f"  tracked redirects        {rate:10.0f} /s   p50 {statistics.median(latencies) * 1000:6.1f} ms   "
          f"p99 {percentile(latencies, 0.99) * 1000:6.1f} ms")
    print(f"  bare aiohttp 302         {bare_rate:10.0f} /s   p50 {statistics.median(bare_latencies) * 1000:6.1f} ms   "
          f"p99 {percentile(bare_latencies, 0.99) * 1000:6.1f} ms")
    print(f"  ratio tracked/bare       {rate / bare_rate:10.2f}")
    per, bare_per = cpu / sent * 1e6, bare_cpu / args.requests * 1e6
    print(f"  server CPU per redirect  {per:10.0f} µs tracked (clicks stored included), {bare_per:.0f} µs bare; "
          f"bare/tracked {bare_per / per:.2f}")
    summary("tracked redirects", rate, "/s", bare_rate, "/s bare aiohttp 302", rate / bare_rate)
    summary("tracked redirect, redirects per CPU-second", 1e6 / per, "/CPU-s", 1e6 / bare_per,
            "/CPU-s bare aiohttp 302", bare_per / per)
    print(f"  clicks stored            {stored} of {sent} sent ({'equal' if stored == sent else 'NOT EQUAL'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--redis", default="")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
