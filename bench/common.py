"""What the benchmarks share: a fresh database, the simulator, and a real `partnerbot serve`."""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.web.links import VISITOR_COOKIE, sign_visitor  # noqa: E402
from bot.simulator import WeComSimulator  # noqa: E402
from store.db import Database, migrate  # noqa: E402
from store.members import MemberRow, import_members  # noqa: E402


def summary(name: str, figure: float, unit: str, baseline: float | None = None, baseline_unit: str = "",
            ratio: float | None = None) -> None:
    """One machine-readable line per headline figure; bench/run gathers them into one table."""
    cells = [name, f"{figure:.4g}", unit, "" if baseline is None else f"{baseline:.4g}", baseline_unit,
             "" if ratio is None else f"{ratio:.3g}"]
    print("RESULT\t" + "\t".join(cells))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc; its children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BenchDatabase:
    url: str
    server_url: str
    name: str | None  # a PostgreSQL database made for this run, dropped afterwards

    @classmethod
    async def create(cls, server_url: str) -> BenchDatabase:
        if server_url.startswith("sqlite"):
            return cls(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db", server_url, None)
        name = f"pbbench_{secrets.token_hex(4)}"
        admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
        # make_url keeps a query such as ?host=/var/run/postgresql (PostgreSQL over its Unix socket)
        return cls(make_url(server_url).set(database=name).render_as_string(hide_password=False), server_url, name)

    async def seed(self, members: list[MemberRow]) -> None:
        await asyncio.to_thread(migrate, self.url)
        db = Database(self.url)
        async with db.session() as session:
            await import_members(session, members)
        await db.dispose()

    async def sharer_link(self, url: str) -> str:
        """Migrate and seed one partner member with an active task to `url`; their link's code."""
        from store import links as link_store
        from store import tasks as task_store
        from store.members import get_member

        await self.seed([MemberRow(0, "sharer", "分享者", "partner", "星河科技", "华东", ())])
        db = Database(self.url)
        async with db.session() as session:
            task = await task_store.create_task(session, title="Bench", url=url, creator=None, status="active")
            link = await link_store.get_or_create_link(session, task, await get_member(session, "sharer"), "link")
            code = link.code
        await db.dispose()
        return code

    async def drop(self) -> None:
        if self.name is None:
            return
        admin = create_async_engine(self.server_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        await admin.dispose()


class BotAndSimulator:
    """The simulator in this process, the bot as a real `partnerbot serve` subprocess."""

    def __init__(self, database_url: str, redis_url: str, directory: dict[str, str], **env: str) -> None:
        self.corp, self.agent = "wwbench000000001", 1000002
        self.secret, self.token = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
        self.aes = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))
        self.sim_port, self.bot_port = free_port(), free_port()
        self.sim = WeComSimulator(corp_id=self.corp, agent_id=self.agent, secret=self.secret, token=self.token,
                                  encoding_aes_key=self.aes, directory=directory,
                                  callback_url=f"http://127.0.0.1:{self.bot_port}/wecom/callback")
        self.env = {**os.environ, "PARTNERBOT_SERVER_PORT": str(self.bot_port), "PARTNERBOT_DATABASE_URL": database_url,
                    "PARTNERBOT_REDIS_URL": redis_url,
                    "PARTNERBOT_REDIS_KEY_PREFIX": f"pbbench:{secrets.token_hex(4)}:",
                    "PARTNERBOT_WECOM_CORP_ID": self.corp, "PARTNERBOT_WECOM_AGENT_ID": str(self.agent),
                    "PARTNERBOT_WECOM_SECRET": self.secret, "PARTNERBOT_WECOM_TOKEN": self.token,
                    "PARTNERBOT_WECOM_ENCODING_AES_KEY": self.aes,
                    "PARTNERBOT_WECOM_API_BASE_URL": f"http://127.0.0.1:{self.sim_port}",
                    "PARTNERBOT_SERVER_IP_HASH_SALT": secrets.token_urlsafe(16),
                    "PARTNERBOT_LINKS_VISITOR_SECRET": secrets.token_urlsafe(24),
                    "PARTNERBOT_LOG_LEVEL": "WARNING", **env}
        self.env.pop("PARTNERBOT_CONFIG", None)
        self.bot: subprocess.Popen | None = None
        self.runner: web.AppRunner | None = None

    def visitor_cookie(self, i: int) -> str:
        """A distinct visitor the bot believes (it signed the cookie), so flood protection keeps every click."""
        return f"{VISITOR_COOKIE}={sign_visitor(self.env['PARTNERBOT_LINKS_VISITOR_SECRET'].encode(), f'bench{i:016d}')}"

    @property
    def bot_url(self) -> str:
        return f"http://127.0.0.1:{self.bot_port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    async def __aenter__(self) -> BotAndSimulator:
        self.runner = web.AppRunner(self.sim.create_app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.sim_port).start()
        command = [sys.executable, "-m", "bot", "serve"]
        self.profile = os.environ.get("BENCH_PROFILE", "")
        if self.profile:  # where the bot's time goes: py-spy samples `serve` (raw, collapsed stacks)
            spy = Path(sys.executable).with_name("py-spy")
            command = [str(spy), "record", "--format", "raw", "--rate", "200", "-o", self.profile, "--", *command]
        self.bot = subprocess.Popen(command, env=self.env, cwd=tempfile.mkdtemp())
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                try:
                    async with http.get(f"{self.bot_url}/healthz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise SystemExit("the bot did not start")

    async def __aexit__(self, *_exc: object) -> None:
        if self.bot is not None:
            # py-spy writes its profile when interrupted, and passes the interrupt on to `serve`
            self.bot.send_signal(signal.SIGINT) if self.profile else self.bot.terminate()
            self.bot.wait(60)
        if self.runner is not None:
            await self.runner.cleanup()


# Everything is generated relative to now, in SQL: a million rows through Python would measure Python.
GENERATE = [
    "INSERT INTO tasks (title, description, target_url, poster_template, status, cost, created_at, updated_at) "
    "SELECT '任务' || g, '', 'https://brand.example/' || g, 'classic', 'active', 1000 * (g % 7), now(), now() "
    "FROM generate_series(1, :tasks) g",
    # Each member shares 5 tasks: one link per (task, member).
    "INSERT INTO tracked_links (code, task_id, member_id, channel, created_at) "
    "SELECT left(md5(m.id || '-' || k), 16), 1 + (m.id * 7 + k * 13) % :tasks, m.id, 'link', now() "
    "FROM members m CROSS JOIN generate_series(1, 5) k WHERE m.role = 'partner'",
    "INSERT INTO shares (task_id, member_id, channel, created_at) "
    "SELECT l.task_id, l.member_id, 'link', now() - random() * interval '90 days' FROM tracked_links l, generate_series(1, 2)",
    "INSERT INTO outbox (channel, recipient, kind, payload, dedupe_key, purpose, task_id, status, attempts, "
    "next_attempt_at, created_at, sent_at) SELECT 'wecom', m.userid, 'card', '{}', 'b' || l.id, 'task_card', l.task_id, "
    "'sent', 1, now(), now(), now() - random() * interval '90 days' FROM tracked_links l JOIN members m ON m.id = l.member_id",
    # --spread burst: a link is shared on one day and its clicks fade over the next days (mean 1 day;
    # those that would fall after now are mirrored back),
    # as shared content does; --spread uniform: any link on any of the 90 days (the worst case).
    "INSERT INTO clicks (link_id, at, visitor_id, ip_hash, user_agent, referrer, is_bot, is_unique, event_id) "
    "SELECT link_id, CASE WHEN :burst THEN now() - abs((link_id * 7919 % 90) + ln(1 - random())) "
    "* interval '1 day' ELSE now() - random() * interval '90 days' END, "
    "md5(g::text), md5(g::text), 'Mozilla/5.0', '', random() < 0.1, random() < 0.7, 'e' || g "
    "FROM (SELECT g, 1 + (random() * (:links - 1))::int AS link_id FROM generate_series(1, :clicks) g) picked",
    "INSERT INTO leads (name, company, phone, region, industry, source, status, partner_id, task_id, link_id, "
    "visitor_id, won_amount, won_at, claimed_at, created_at, updated_at) "
    "SELECT '客户' || g, '公司' || g, '139' || lpad(g::text, 8, '0'), '', '', 'form:link', "
    "CASE WHEN g <= :wins THEN 'won' WHEN g % 2 = 0 THEN 'claimed' ELSE 'new' END, m.partner_id, l.task_id, l.id, '', "
    "CASE WHEN g <= :wins THEN 1000 + g % 50000 END, NULL, NULL, now() - random() * interval '90 days', now() "
    "FROM generate_series(1, :leads) g JOIN tracked_links l ON l.id = 1 + g % :links JOIN members m ON m.id = l.member_id",
    "UPDATE leads SET won_at = created_at + (now() - created_at) * random() WHERE status = 'won'",
    "INSERT INTO lead_events (lead_id, kind, member_id, note, at) "
    "SELECT id, 'claimed', (SELECT member_id FROM tracked_links WHERE id = leads.link_id), '', created_at "
    "FROM leads WHERE status <> 'new'",
    # 1-4 touches per lead, on links of the same task, before the lead came in.
    "INSERT INTO lead_touches (lead_id, link_id, click_id, kind, at) "
    "SELECT id, 1 + (link_id + k * 101) % :links, NULL, 'click', created_at - k * interval '1 hour' "
    "FROM leads CROSS JOIN generate_series(0, 3) k WHERE k <= id % 4",
    "ANALYZE",
]


async def generate_activity(db: Database, **sizes: object) -> None:
    """A programme's worth of tasks, links, shares, deliveries, clicks, leads, wins and touches
    (sizes: tasks, links, clicks, leads, wins, burst) over the last 90 days, made by the database."""
    async with db.session() as session:
        for statement in GENERATE:
            await session.execute(text(statement), sizes if ":" in statement else {})
