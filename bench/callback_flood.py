"""Benchmark: does a flood of unsigned, oversized callbacks slow down everyone else? A `/t/<code>`
redirect's latency through a real `partnerbot serve`, alone and while 20 unsigned 256 KB callbacks
(the costliest XML per byte: tiny elements) arrive at /wecom/callback, in the same run.

    python bench/callback_flood.py --database postgresql+asyncpg://root@127.0.0.1:5432/test \\
                                   --redis redis://127.0.0.1:6379/0

Before the signature was checked first (issue 14, item 11), the bot parsed each such body (~200 ms
of CPU apiece) and a redirect waited 1.8 s behind 20 of them; the aim is well under 100 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from urllib.parse import urlencode

import aiohttp

from common import BenchDatabase, BotAndSimulator, percentile, summary


BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0"
# Just under the app's 256 KB body limit, so only the callback's own checks can refuse it early.
HEAVY = b"<xml>" + b"<a>1</a>" * ((256 * 1024 - 40) // 8) + b"<Encrypt>QUJD</Encrypt></xml>"


async def redirect_once(http: aiohttp.ClientSession, url: str, visitor: int) -> float:
    started = time.perf_counter()
    async with http.get(url, allow_redirects=False,
                        headers={"Cookie": f"pb_vid=flood{visitor:016d}", "User-Agent": BROWSER}) as r:
        await r.read()
        assert r.status == 302, r.status
    return time.perf_counter() - started


async def unsigned_callback(http: aiohttp.ClientSession, bot_url: str, statuses: dict[str, int]) -> None:
    now = str(int(time.time()))
    query = urlencode({"msg_signature": "0" * 40, "timestamp": now, "nonce": "1"})
    try:
        async with http.post(f"{bot_url}/wecom/callback?{query}", data=HEAVY) as r:
            await r.read()
            key = str(r.status)
    except aiohttp.ClientError as err:  # refused before the whole body was sent: the server may hang up
        key = type(err).__name__
    statuses[key] = statuses.get(key, 0) + 1


async def run(args: argparse.Namespace) -> None:
    db = await BenchDatabase.create(args.database)
    code = await db.sharer_link("https://brand.example/landing")
    alone: list[float] = []
    flooded: list[float] = []
    statuses: dict[str, int] = {}
    try:
        async with BotAndSimulator(db.url, args.redis, {"sharer": "分享者"}) as stack:
            url = f"{stack.bot_url}/t/{code}"
            visitor = iter(range(10**9))
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as redirects, \
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as attackers:
                for _ in range(20):  # warm up: the link cache, connections
                    await redirect_once(redirects, url, next(visitor))
                for _ in range(args.rounds):
                    for _ in range(args.redirects):
                        alone.append(await redirect_once(redirects, url, next(visitor)))
                    flood = [asyncio.create_task(unsigned_callback(attackers, stack.bot_url, statuses))
                             for _ in range(args.callbacks)]
                    await asyncio.sleep(0.005)  # the callbacks are on their way
                    while True:  # redirects one after another for as long as callbacks are in flight
                        flooded.append(await redirect_once(redirects, url, next(visitor)))
                        if all(f.done() for f in flood):
                            break
                    await asyncio.gather(*flood)
    finally:
        await db.drop()

    def line(name: str, values: list[float]) -> str:
        return (f"  {name:<34} n={len(values):<5} p50 {statistics.median(values) * 1000:7.1f} ms   "
                f"p99 {percentile(values, 0.99) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms")

    print(f"callback flood benchmark: {args.rounds} rounds of {args.callbacks} unsigned {len(HEAVY) // 1024} KB "
          f"callbacks, database {'postgresql' if db.name else 'sqlite'}, redis {'yes' if args.redis else 'no'}")
    print(f"  callback answers                   {statuses}")
    print(line("redirect alone", alone))
    print(line("redirect during the flood", flooded))
    p99_alone, p99_flood = percentile(alone, 0.99) * 1000, percentile(flooded, 0.99) * 1000
    print(f"  ratio p99 flood/alone              {p99_flood / p99_alone:7.2f}")
    summary("redirect p99 during callback flood", p99_flood, "ms", p99_alone, "ms alone", p99_flood / p99_alone)
    summary("redirect p50 during callback flood", statistics.median(flooded) * 1000, "ms",
            statistics.median(alone) * 1000, "ms alone", statistics.median(flooded) / statistics.median(alone))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--redis", default="")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--callbacks", type=int, default=20, help="unsigned callbacks per round, all at once")
    parser.add_argument("--redirects", type=int, default=20, help="redirects alone per round (the baseline)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
