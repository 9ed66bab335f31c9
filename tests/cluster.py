"""A cluster as production runs it: several real `partnerbot serve` processes on one PostgreSQL and
one Redis, the WeCom simulator, and a client that spreads callbacks, redirects and claims across the
instances the way a load balancer and WeCom's retries would. Faults are real: the test's own
redis-server is killed and started again, instances are killed with SIGKILL.

`Cluster.check_invariants()` checks what must hold globally, whatever happened: each message
answered once, each broadcast card delivered once, each lead owned by one member, every click
stored once, each once-per-period job run once.
"""
from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from bot.config import Config
from bot.simulator import WeComSimulator
from store.db import Database
from store.tasks import TASK_CARD
from store.models import Click, InboxMessage, JobRun, Lead, LeadEvent, OutboxMessage
from tests.conftest import (FULL_PHONE, IN_CI, SECRETS, ServeProcess, eventually, free_port, serve_env,
                            simulator_for, visitor_cookie)

BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
# Short leases and intervals, so that work of a killed instance is taken over within seconds.
FAST = {"PARTNERBOT_INBOX_LEASE_SECONDS": "3", "PARTNERBOT_INBOX_SWEEP_INTERVAL_SECONDS": "0.3",
        "PARTNERBOT_OUTBOX_LEASE_SECONDS": "3", "PARTNERBOT_OUTBOX_BACKOFF_BASE_SECONDS": "0.2",
        "PARTNERBOT_OUTBOX_BACKOFF_MAX_SECONDS": "1", "PARTNERBOT_LINKS_STREAM_RECLAIM_SECONDS": "3",
        "PARTNERBOT_LINKS_FLOOD_WINDOW_SECONDS": "0.001",
        # Every once-a-day and once-a-month job is due at once, on every instance.
        "PARTNERBOT_STATS_DIGEST_HOUR": "0", "PARTNERBOT_STATS_DIGEST_CHECK_SECONDS": "0.5",
        "PARTNERBOT_SERVER_IP_HASH_SALT": "cluster-test-salt"}


def need_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        import pytest

        message = "redis-server is not installed (apt-get install redis-server)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    return str(path)


class RedisServer:
    """The test's own redis-server, to kill and restart. Without `folder` it keeps nothing on disk
    (a restart comes back empty); with it, an append-only file written on every command."""

    def __init__(self, folder: Path | None = None) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)] \
            if self.folder is not None else ["--appendonly", "no"]
        self.process = subprocess.Popen([need_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", *persistence],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        async def up() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return True
            except OSError:
                return False

        await eventually(up, timeout=15)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class Cluster:
    config: Config
    sim: WeComSimulator
    redis: RedisServer
    instances: list[ServeProcess]
    db: Database
    sim_runner: web.AppRunner
    folder: Path
    # What the client sent and what was acknowledged, for the invariants.
    said: dict[str, str] = field(default_factory=dict)  # token -> userid of every acknowledged message
    redirects_answered: int = 0
    answered_by: dict[str, int] = field(default_factory=dict)  # visitor -> index of the instance that answered
    _ids: itertools.count = field(default_factory=lambda: itertools.count(7_100_000_000))
    _turn: itertools.count = field(default_factory=itertools.count)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{i.port}" for i in self.instances]

    def _next_urls(self) -> list[str]:
        """The instance to try first, then the others: a load balancer skipping a dead backend."""
        start = next(self._turn) % len(self.instances)
        return self.urls[start:] + self.urls[:start]

    async def say(self, http: aiohttp.ClientSession, userid: str, text: str) -> bool:
        """Send one message like WeCom: on no 200 (or no answer in 5 s) the same message again, up to
        3 retries, each to the next instance. True when it was acknowledged."""
        msg_id = str(next(self._ids))
        plaintext = self.sim.text_xml(userid, text, msg_id, int(time.time()))
        for url in (self._next_urls() * 2)[:4]:
            query, body = self.sim.encrypt_callback(plaintext)
            try:
                async with http.post(f"{url}/wecom/callback?{query}", data=body,
                                     timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if response.status == 200:
                        # As WeCom: a passive reply in the answer is shown to the member.
                        self.sim.take_answer(userid, await response.read())
                        return True
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.2)
        return False

    async def ask_unique(self, http: aiohttp.ClientSession, userid: str, token: str) -> None:
        """A message whose reply names it (an unknown command echoes its word), to match replies."""
        if await self.say(http, userid, token):
            self.said[token] = userid

    async def redirect(self, http: aiohttp.ClientSession, code: str, visitor: str) -> bool:
        """A visitor follows a tracked link (on no answer, a browser's retry reaches another instance)."""
        for url in self._next_urls()[:2]:
            try:
                async with http.get(f"{url}/t/{code}", allow_redirects=False,
                                    headers={"User-Agent": BROWSER, "Cookie": visitor_cookie(self.config, visitor)},
                                    timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if response.status == 302:
                        self.redirects_answered += 1
                        self.answered_by[visitor] = self.urls.index(url)
                        return True
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
        return False

    # ----- invariants ----------------------------------------------------------------------------
    async def messages_answered_once(self, timeout: float = 60) -> None:
        async def all_answered() -> bool:
            return all(len(self.replies_to(token)) >= 1 for token in self.said)

        await eventually(all_answered, timeout=timeout, interval=0.2)
        await asyncio.sleep(1.0)  # a duplicate would arrive about now
        doubled = {t: n for t in self.said if (n := len(self.replies_to(t))) != 1}
        assert not doubled, f"answered more than once: {doubled}"
        async with self.db.session() as session:
            keys = Counter(await session.scalars(select(InboxMessage.dedupe_key)))
            assert max(keys.values(), default=1) == 1
            stuck = await session.scalar(select(func.count()).select_from(InboxMessage)
                                         .where(InboxMessage.status != "done"))
            assert stuck == 0, f"{stuck} inbox rows not done"

    def replies_to(self, token: str) -> list[str]:
        return [m.body["content"] for m in self.sim.bot_messages(self.said[token])
                if m.msgtype == "text" and f"“{token}”" in m.body.get("content", "")]

    async def cards_delivered_once(self, task_id: int, members: list[str], timeout: float = 60) -> None:
        def cards(userid: str) -> int:
            return sum(1 for m in self.sim.bot_messages(userid) if m.msgtype == "template_card"
                       and f"#{task_id}" in m.body.get("main_title", {}).get("title", ""))

        async def all_delivered() -> bool:
            return all(cards(u) >= 1 for u in members)

        await eventually(all_delivered, timeout=timeout, interval=0.2)
        await asyncio.sleep(1.0)
        assert {u: cards(u) for u in members if cards(u) != 1} == {}
        async with self.db.session() as session:
            rows = Counter(await session.scalars(select(OutboxMessage.recipient).where(
                OutboxMessage.task_id == task_id, OutboxMessage.purpose == TASK_CARD)))
        assert rows == Counter(members)

    async def leads_owned_once(self) -> None:
        async with self.db.session() as session:
            claims = Counter(await session.scalars(select(LeadEvent.lead_id).where(LeadEvent.kind == "claimed")))
            assert max(claims.values(), default=1) == 1, claims
            owned = await session.scalar(select(func.count()).select_from(Lead).where(Lead.owner_id.is_not(None)))
            assert owned == len(claims)

    async def clicks_stored_once(self, timeout: float = 60) -> None:
        async def stored() -> int:
            async with self.db.session() as session:
                return int(await session.scalar(select(func.count()).select_from(Click)) or 0)

        async def all_stored() -> bool:
            return await stored() >= self.redirects_answered

        try:
            await eventually(all_stored, timeout=timeout, interval=0.2)
        except AssertionError:
            raise AssertionError(f"{await stored()} of {self.redirects_answered} clicks stored") from None
        await asyncio.sleep(1.0)
        assert await stored() == self.redirects_answered
        async with self.db.session() as session:
            distinct = await session.scalar(select(func.count(func.distinct(Click.event_id))))
        assert distinct == self.redirects_answered

    async def jobs_ran_once(self, admins: list[str], timeout: float = 30) -> None:
        def digests(userid: str) -> int:
            return sum(1 for m in self.sim.bot_messages(userid) if "Daily digest" in m.body.get("content", ""))

        async def every_admin_has_one() -> bool:
            return all(digests(a) >= 1 for a in admins)

        await eventually(every_admin_has_one, timeout=timeout, interval=0.2)
        await asyncio.sleep(1.5)  # several more job rounds on every instance
        assert {a: digests(a) for a in admins} == {a: 1 for a in admins}
        async with self.db.session() as session:
            runs = Counter((r.name, r.period) for r in await session.scalars(select(JobRun)))
        month = datetime.now(ZoneInfo(self.config.server.timezone)).strftime("%Y-%m")
        assert runs[("tiers", month)] == 1  # the monthly tier recalculation, due on every instance
        assert max(runs.values()) == 1

    async def check_invariants(self, *, admins: list[str] = ()) -> None:  # type: ignore[assignment]
        await self.messages_answered_once()
        await self.leads_owned_once()
        await self.clicks_stored_once()
        if admins:
            await self.jobs_ran_once(list(admins))

    def logs_keep_secrets(self) -> None:
        """The instances' own log files: no secret, no full phone number."""
        for instance in self.instances:
            text = instance.log_text()
            assert not FULL_PHONE.search(text), "an instance logged a full phone number"
            assert not [s for s in SECRETS if s and s in text], "an instance logged a secret"

    def logged(self, pattern: str) -> bool:
        return any(re.search(pattern, i.log_text()) for i in self.instances)

    async def add_instance(self, **env: str) -> ServeProcess:
        """Start one more instance (FAST settings, overridden by `env`)."""
        port = free_port()
        process = ServeProcess(serve_env(self.config, port, **{**FAST, **env}), self.folder, port,
                               self.folder / f"instance{len(self.instances)}.log")
        self.instances.append(process)
        await process.start()
        return process

    async def stop(self) -> None:
        for instance in self.instances:
            if instance.process is not None and instance.process.poll() is None:
                instance.process.terminate()
                try:
                    instance.process.wait(20)
                except subprocess.TimeoutExpired:
                    instance.kill()
        await self.sim_runner.cleanup()
        self.redis.kill()
        await self.db.dispose()


async def start_cluster(config: Config, folder: Path, instances: int = 2, directory: dict[str, str] | None = None,
                        redis_on_disk: bool = False, **env: str) -> Cluster:
    """`instances` serve processes on config's database and the test's own Redis, and the simulator."""
    redis = RedisServer(folder if redis_on_disk else None)
    await redis.start()
    config.redis.url = redis.url
    sim_port = free_port()
    config.wecom.api_base_url = f"http://127.0.0.1:{sim_port}"
    sim = simulator_for(config, 0, directory)  # the client below picks the instance for each callback
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sim_port).start()
    cluster = Cluster(config, sim, redis, [], Database(config.database.url), runner, folder)
    try:
        await asyncio.gather(*(cluster.add_instance(**env) for _ in range(instances)))
    except BaseException:
        await cluster.stop()
        raise
    return cluster
