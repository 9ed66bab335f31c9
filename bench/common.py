"""What the benchmarks share: a fresh database, the simulator, and a real `partnerbot serve`."""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import string
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.simulator import WeComSimulator  # noqa: E402
from store.db import Database, migrate  # noqa: E402
from store.members import MemberRow, import_members  # noqa: E402


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
        return cls(f"{server_url.rpartition('/')[0]}/{name}", server_url, name)

    async def seed(self, members: list[MemberRow]) -> None:
        await asyncio.to_thread(migrate, self.url)
        db = Database(self.url)
        async with db.session() as session:
            await import_members(session, members)
        await db.dispose()

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
                    "PARTNERBOT_LOG_LEVEL": "WARNING", **env}
        self.env.pop("PARTNERBOT_CONFIG", None)
        self.bot: subprocess.Popen | None = None
        self.runner: web.AppRunner | None = None

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
        self.bot = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=self.env, cwd=tempfile.mkdtemp())
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
            self.bot.terminate()
            self.bot.wait(60)
        if self.runner is not None:
            await self.runner.cleanup()
