"""Benchmark: encrypted `help` callbacks through the full path of a real `partnerbot serve` process.

verify → decrypt → de-duplicate → inbox row → acknowledge → route → outbox → message/send to the
WeCom simulator. Prints messages/s, acknowledgement latency (p50/p99) and the ratio to a
decrypt-and-parse-only loop over the same callbacks, measured in the same run.

    python bench/callback.py --database postgresql+asyncpg://root@127.0.0.1:5432/test \
                             --redis redis://127.0.0.1:6379/0
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.channels.wecom import WeComCodec, read_message  # noqa: E402
from bot.config import WeComConfig  # noqa: E402
from bot.simulator import WeComSimulator  # noqa: E402
from store.db import Database, migrate  # noqa: E402
from store.members import MemberRow, import_members  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fresh_database(url: str) -> tuple[str, str | None]:
    """A new empty database for the run: a temporary file for SQLite, a new database on PostgreSQL."""
    if url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db", None
    name = f"pbbench_{secrets.token_hex(4)}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return f"{url.rpartition('/')[0]}/{name}", name


async def drop_database(url: str, name: str) -> None:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    db_url, db_name = await fresh_database(args.database)
    members = [MemberRow(0, f"m{i:05d}", f"Member {i}", "partner", f"Partner {i % 10}", "", ())
               for i in range(max(100, args.messages // 20))]  # stays under WeCom's 30/min per member
    await asyncio.to_thread(migrate, db_url)
    db = Database(db_url)
    async with db.session() as session:
        await import_members(session, members)
    await db.dispose()

    corp, agent = "wwbench000000001", 1000002
    secret, token = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
    aes = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))
    sim_port, bot_port = free_port(), free_port()
    sim = WeComSimulator(corp_id=corp, agent_id=agent, secret=secret, token=token, encoding_aes_key=aes,
                         callback_url=f"http://127.0.0.1:{bot_port}/wecom/callback",
                         directory={m.userid: m.name for m in members})
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sim_port).start()
    env = {**os.environ, "PARTNERBOT_SERVER_PORT": str(bot_port), "PARTNERBOT_DATABASE_URL": db_url,
           "PARTNERBOT_REDIS_URL": args.redis, "PARTNERBOT_REDIS_KEY_PREFIX": f"pbbench:{secrets.token_hex(4)}:",
           "PARTNERBOT_WECOM_CORP_ID": corp, "PARTNERBOT_WECOM_AGENT_ID": str(agent),
           "PARTNERBOT_WECOM_SECRET": secret, "PARTNERBOT_WECOM_TOKEN": token,
           "PARTNERBOT_WECOM_ENCODING_AES_KEY": aes, "PARTNERBOT_WECOM_API_BASE_URL": f"http://127.0.0.1:{sim_port}",
           "PARTNERBOT_LOG_LEVEL": "WARNING"}
    bot = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--config", str(REPO / "config.toml")],
                           env=env, cwd=REPO)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{bot_port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            now = int(time.time())
            callbacks = [sim.encrypt_callback(sim.text_xml(members[i % len(members)].userid, "help",
                                                           str(10**15 + i), now))
                         for i in range(args.messages)]

            # Warm up the connection pool, the token and the database caches.
            for query, body in callbacks[:20]:
                async with http.post(f"http://127.0.0.1:{bot_port}/wecom/callback?{query}", data=body) as r:
                    assert r.status == 200
            await wait_for_replies(sim, 20)

            latencies: list[float] = []
            queue = list(callbacks[20:])
            statuses: dict[int, int] = {}

            async def worker() -> None:
                while queue:
                    query, body = queue.pop()
                    started = time.perf_counter()
                    async with http.post(f"http://127.0.0.1:{bot_port}/wecom/callback?{query}", data=body) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                    latencies.append(time.perf_counter() - started)

            measured = len(queue)
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            acked = time.perf_counter() - started
            await wait_for_replies(sim, args.messages, timeout=300)
            replied = time.perf_counter() - started
    finally:
        bot.terminate()
        bot.wait(30)
        await runner.cleanup()
        if db_name:
            await drop_database(args.database, db_name)

    # Baseline: verify + decrypt + parse the same callbacks in a loop, nothing else.
    codec = WeComCodec(WeComConfig(corp_id=corp, token=token, encoding_aes_key=aes))
    from urllib.parse import parse_qsl
    parsed = [(dict(parse_qsl(q)), b) for q, b in callbacks]
    started = time.perf_counter()
    for query, body in parsed:
        read_message(codec.decrypt(query, body))
    baseline = time.perf_counter() - started

    full_rate = measured / replied
    base_rate = len(parsed) / baseline
    print(f"callback benchmark: {measured} messages, concurrency {args.concurrency}, "
          f"database {'postgresql' if db_name else 'sqlite'}, redis {'yes' if args.redis else 'no'}")
    print(f"  HTTP statuses             {statuses}")
    print(f"  acknowledged              {measured / acked:10.0f} msg/s")
    print(f"  answered (reply received) {full_rate:10.0f} msg/s")
    print(f"  ack latency p50           {statistics.median(latencies) * 1000:10.1f} ms")
    print(f"  ack latency p99           {percentile(latencies, 0.99) * 1000:10.1f} ms")
    print(f"  ack latency max           {max(latencies) * 1000:10.1f} ms")
    print(f"  baseline decrypt+parse    {base_rate:10.0f} msg/s")
    print(f"  ratio full path/baseline  {full_rate / base_rate:10.3f}")
    duplicates = len(sim.bot_messages()) - args.messages
    print(f"  replies {len(sim.bot_messages())} (duplicates {duplicates}, dropped by WeCom limits {len(sim.dropped)})")


async def wait_for_replies(sim: WeComSimulator, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(sim.bot_messages()) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(sim.bot_messages())} of {count} replies arrived")
        await asyncio.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite", help="PostgreSQL server URL (a fresh database is made) or sqlite")
    parser.add_argument("--redis", default="", help="Redis URL, or empty for none")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
