"""Benchmark: the WeChat Official Account's passive reply. A bound follower sends `帮助` one message at a
time; the answer to the callback carries the reply (encrypted, safe mode). Prints the round trip
p50/p99 and how many replies went back passively, against the WeCom callback's acknowledgement
round trip (which carries no reply) measured in the same run, on the same bot.

    python bench/wechat.py [--messages 200] [--database sqlite|postgresql+asyncpg://…]
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import string
import tempfile
import time

import aiohttp
from aiohttp import web

from common import BenchDatabase, MemberRow, free_port, percentile, summary

from bot.app import create_app
from bot.config import Config
from bot.simulator import WeChatSimulator, WeComSimulator
from store.db import Database
from store.members import get_member

OPENID = "oBench00000000000000000000p1"


def key() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


async def run(args: argparse.Namespace) -> None:
    bench_db = await BenchDatabase.create(args.database)  # "sqlite": a file of its own
    await bench_db.seed([MemberRow(0, "p1", "Member 1", "partner", "Partner", "", ())])
    url = bench_db.url
    db = Database(url)
    try:
        from store.bindings import WECHAT, attach

        async with db.session() as session:
            member = await get_member(session, "p1")
            await attach(session, member, WECHAT, OPENID, push_there=False)
        config = Config(source="bench")
        config.database.url = url
        config.posters.cache_dir = tempfile.mkdtemp()
        config.wecom.member_messages_per_minute = config.wecom.member_messages_per_hour = 10**6
        # The WeCom side is the acknowledgement-only baseline: its replies through message/send.
        config.wecom.passive_reply_seconds = 0
        w, c = config.wecom, config.wechat
        w.corp_id, w.agent_id, w.secret, w.token, w.encoding_aes_key = "wwbench", 1000002, "s", "t", key()
        c.app_id, c.secret, c.token, c.encoding_aes_key = "wxbench", "s", "t", key()
        sim_port, bot_port = free_port(), free_port()
        w.api_base_url, c.api_base_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{sim_port}/mp"
        wechat = WeChatSimulator(app_id=c.app_id, secret=c.secret, token=c.token, encoding_aes_key=c.encoding_aes_key,
                                 callback_url=f"http://127.0.0.1:{bot_port}/wechat/callback", followers={OPENID: "p1"},
                                 reply_quota=False)
        sim = WeComSimulator(corp_id=w.corp_id, agent_id=w.agent_id, secret=w.secret, token=w.token,
                             encoding_aes_key=w.encoding_aes_key, callback_url=f"http://127.0.0.1:{bot_port}/wecom/callback",
                             directory={"p1": "Member 1"}, wechat=wechat)
        runners = []
        for app, port in ((sim.create_app(), sim_port), (create_app(config), bot_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        try:
            passive, wechat_times = 0, []
            for _ in range(args.messages):
                started = time.perf_counter()
                delivery = await wechat.send_text(OPENID, "帮助")
                wechat_times.append(time.perf_counter() - started)
                passive += delivery.reply is not None
            wecom_times = []
            async with aiohttp.ClientSession() as http:
                for i in range(args.messages):
                    query, body = sim.encrypt_callback(sim.text_xml("p1", "帮助", str(5 * 10**15 + i), int(time.time())))
                    started = time.perf_counter()
                    async with http.post(f"http://127.0.0.1:{bot_port}/wecom/callback?{query}", data=body) as response:
                        assert response.status == 200
                    wecom_times.append(time.perf_counter() - started)
        finally:
            for runner in reversed(runners):
                await runner.cleanup()
    finally:
        await db.dispose()
        await bench_db.drop()
    ms = 1000
    print(f"wechat benchmark: {args.messages} messages one at a time, {args.database.split(':')[0]}")
    print(f"  WeChat, reply in the answer: p50 {percentile(wechat_times, 0.5) * ms:.1f} ms, "
          f"p99 {percentile(wechat_times, 0.99) * ms:.1f} ms; {passive} of {args.messages} replies passive")
    print(f"  WeCom, acknowledgement only: p50 {percentile(wecom_times, 0.5) * ms:.1f} ms, "
          f"p99 {percentile(wecom_times, 0.99) * ms:.1f} ms")
    summary("wechat passive reply round trip p50", percentile(wechat_times, 0.5) * ms, "ms",
            percentile(wecom_times, 0.5) * ms, "ms wecom ack", percentile(wechat_times, 0.5) / percentile(wecom_times, 0.5))
    summary("wechat replies passive", 100 * passive / args.messages, "%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--messages", type=int, default=200)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
