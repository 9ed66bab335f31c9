"""Shared fixtures: databases (SQLite always; PostgreSQL and Redis when their URLs are set),
and a running stack of bot + WeCom simulator on free ports, talking real HTTP."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import secrets
import socket
import string
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import create_app
from bot.channels import CHANNELS
from bot.channels.base import Channel
from bot.config import Config
from bot.web.links import VISITOR_COOKIE, sign_visitor, visitor_secret
from bot.simulator import WeChatSimulator, WeComSimulator
from handlers.context import CommandTable
from store.db import Database, migrate
from store.members import MemberRow, import_members

POSTGRES_URL = os.environ.get("PARTNERBOT_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("PARTNERBOT_TEST_REDIS_URL", "")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Secrets the tests hand out (WeCom secret/token/AES key, admin tokens): none may reach a log line.
SECRETS: set[str] = set()
FULL_PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
BEARER = re.compile(r"Bearer\s+[A-Za-z0-9._~+/-]{8,}")


# Local times ([server] timezone, Asia/Shanghai in the tests) where "today", "this month" and a day
# key most easily go wrong. Tests marked `clock_edges` run once at the real time and once at each.
CLOCK_EDGES = {
    "first-of-month-0030": "2027-03-01T00:30:00+08:00",  # yesterday is last month (a short one)
    "last-of-month-2330": "2027-02-28T23:30:00+08:00",  # tomorrow is March; UTC's day is the 28th too
    "new-years-eve-2330": "2026-12-31T23:30:00+08:00",  # UTC's day is the 31st 15:30; local year ends soon
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clock_edges: also run the test with the clock at each of CLOCK_EDGES")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("clock_edges"):
        metafunc.parametrize("clock", ["now", *CLOCK_EDGES], indirect=True)


@pytest.fixture(autouse=True)
def clock(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The wall clock for the test: real, or moved to a CLOCK_EDGES moment and ticking from there
    (time-machine moves time.time and datetime.now for the bot, the simulator and the test alike;
    asyncio's monotonic clock is left alone, so timeouts still work)."""
    # PARTNERBOT_TEST_CLOCK=<an edge's name> runs every other test at that moment too.
    edge = getattr(request, "param", os.environ.get("PARTNERBOT_TEST_CLOCK", "now"))
    if edge == "now":
        yield edge
        return
    import time_machine

    with time_machine.travel(CLOCK_EDGES[edge], tick=True):
        yield edge


@pytest.fixture(autouse=True)
def logs_keep_secrets(caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    """Every test's log lines (INFO and up, tracebacks included) are scanned: a full mobile number
    or any configured secret in them fails the test (docs/DESIGN.md §12: never log secrets or phones)."""
    caplog.set_level(logging.INFO)
    yield
    for record in [*caplog.get_records("setup"), *caplog.get_records("call")]:
        line = record.getMessage() + (record.exc_text or "")
        assert not FULL_PHONE.search(line), f"a full phone number was logged: {line[:300]}"
        leaked = [s for s in SECRETS if s and s in line]
        assert not leaked and not BEARER.search(line), f"a secret was logged: {line[:300]}"

MEMBERS = [
    MemberRow(0, "admin1", "Ada Admin", "admin", "", "", ()),
    MemberRow(0, "mkt1", "Mia Marketer", "marketer", "", "", ()),
    MemberRow(0, "p1", "张伟", "partner", "星河科技", "华东", ("制造",)),
    MemberRow(0, "p2", "Li Na", "partner", "Blue Ocean", "华南", ()),
]


def need(url: str, what: str) -> None:
    """Skip without the service on a newcomer's machine; in CI a missing service is a failure."""
    if url:
        return
    message = f"{what} not configured: set PARTNERBOT_TEST_{what.upper()}_URL"
    if IN_CI:
        pytest.fail(message + " (CI must run these tests, not skip them)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aes_key() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


def make_config(database_url: str, redis_url: str = "") -> Config:
    config = Config(source="test")
    config.database.url = database_url
    config.redis.url = redis_url
    config.redis.key_prefix = f"pbtest:{secrets.token_hex(4)}:"
    w = config.wecom
    w.corp_id, w.agent_id, w.secret = "wwtestcorp0000001", 1000002, secrets.token_urlsafe(24)
    w.token, w.encoding_aes_key = secrets.token_urlsafe(12), aes_key()
    SECRETS.update({w.secret, w.token, w.encoding_aes_key})
    # Set as with several instances (required with Redis), so `serve` processes accept the config.
    config.server.ip_hash_salt, config.links.visitor_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(24)
    SECRETS.update({config.server.ip_hash_salt, config.links.visitor_secret})
    config.posters.cache_dir = tempfile.mkdtemp(prefix="pbtest-posters-")
    config.inbox.sweep_interval_seconds = 0.2
    config.outbox.backoff_base_seconds = 0.05
    config.outbox.throttle_pause_seconds = 0.1
    config.outbox.concurrency_pause_seconds = 0.05
    return config


async def _new_postgres_database() -> tuple[str, str]:
    name = f"pbtest_{secrets.token_hex(6)}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    base, _, _ = POSTGRES_URL.rpartition("/")
    return name, f"{base}/{name}"


async def _drop_postgres_database(name: str) -> None:
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@asynccontextmanager
async def migrated_postgres() -> AsyncIterator[str]:
    """A new, migrated PostgreSQL database, dropped afterwards."""
    need(POSTGRES_URL, "postgres")
    name, url = await _new_postgres_database()
    try:
        await asyncio.to_thread(migrate, url)
        yield url
    finally:
        await _drop_postgres_database(name)


async def migrated_sqlite(folder: Path) -> str:
    url = f"sqlite+aiosqlite:///{folder / 'test.db'}"
    await asyncio.to_thread(migrate, url)
    return url


@pytest.fixture
def db_dir(tmp_path: Path) -> Iterator[Path]:
    """Where a test's SQLite file lives: in memory-backed /dev/shm when the machine has it. A test
    checks what the bot does, not how long the disk takes to sync: on a shared disk one commit's
    fsync has been seen to stall past WeCom's 5-second callback timeout."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="partnerbot-test-") as folder:
        yield Path(folder)


@pytest.fixture
async def sqlite_url(db_dir: Path) -> str:
    return await migrated_sqlite(db_dir)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with migrated_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, db_dir: Path) -> AsyncIterator[str]:
    """A freshly migrated, empty database on each backend."""
    if request.param == "sqlite":
        yield await migrated_sqlite(db_dir)
        return
    async with migrated_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database_url(request: pytest.FixtureRequest, db_dir: Path) -> AsyncIterator[str]:
    """A database with no tables on each backend: for migration tests, which migrate it themselves."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{db_dir / 'old.db'}"
        return
    need(POSTGRES_URL, "postgres")
    name, url = await _new_postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(name)


async def sql_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one raw query: migration tests look at tables as they are, not through the models."""
    db = Database(url)
    try:
        async with db.session() as session:
            return [tuple(r) for r in await session.execute(text(sql))]
    finally:
        await db.dispose()


async def sql_run(url: str, *statements: str) -> None:
    db = Database(url)
    try:
        async with db.session() as session:
            for sql in statements:
                await session.execute(text(sql))
    finally:
        await db.dispose()


@pytest.fixture
def redis_url() -> str:
    need(REDIS_URL, "redis")
    return REDIS_URL


async def seed(database_url: str, rows: list[MemberRow] = MEMBERS) -> None:
    db = Database(database_url)
    try:
        async with db.session() as session:
            await import_members(session, rows)
    finally:
        await db.dispose()


def acknowledged(delivery: Any) -> None:
    """The platform got its 200 and the bot refused nothing. A slow first answer that the platform
    retried is allowed: the inbox de-duplicates the retry, and how fast the bot answers is the
    benchmarks' business (bench/), not a timed assertion here."""
    *earlier, last = delivery.attempts
    assert last == "200" and all(attempt == "timeout" for attempt in earlier), delivery.attempts


@dataclass
class Stack:
    config: Config
    sim: WeComSimulator
    bot: web.Application
    bot_url: str
    sim_url: str
    runners: list[web.AppRunner]
    wechat: WeChatSimulator | None = None  # the Official Account, when the stack has one

    async def ask_wechat(self, openid: str, text: str, expect: int = 1) -> list[str]:
        """Type `text` to the Official Account as `openid`; the text of the next `expect` bot messages
        (passive replies and customer-service messages alike)."""
        assert self.wechat is not None, "start the stack with wechat_mode"
        before = len(self.wechat.bot_messages(openid))
        acknowledged(await self.wechat.send_text(openid, text))
        messages = await self.wechat.wait_for_bot_messages(openid, before + expect)
        return [m.body.get("content", "") for m in messages[before:]]

    async def ask(self, userid: str, text: str, expect: int = 1) -> list[str]:
        """Type `text` as `userid` and return the text of the next `expect` bot messages."""
        before = len(self.sim.bot_messages(userid))
        acknowledged(await self.sim.send_text(userid, text))
        messages = await self.sim.wait_for_bot_messages(userid, before + expect)
        return [m.body.get("content", "") for m in messages[before:]]

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()


def simulator_for(config: Config, bot_port: int, directory: dict[str, str] | None = None,
                  **options: Any) -> WeComSimulator:
    w = config.wecom
    return WeComSimulator(corp_id=w.corp_id, agent_id=w.agent_id, secret=w.secret, token=w.token,
                          encoding_aes_key=w.encoding_aes_key, callback_url=f"http://127.0.0.1:{bot_port}/wecom/callback",
                          directory=directory or {m.userid: m.name for m in MEMBERS} | {"stranger": "Stranger"},
                          **options)


def wechat_simulator_for(config: Config, bot_port: int, mode: str, followers: dict[str, str]) -> WeChatSimulator:
    """Configure the bot's [wechat] section (no AES key in plaintext mode) and make its Official Account."""
    c = config.wechat
    c.app_id, c.secret, c.token = "wxtestapp00000001", secrets.token_urlsafe(24), secrets.token_urlsafe(12)
    c.encoding_aes_key = "" if mode == "plain" else aes_key()
    SECRETS.update({c.secret, c.token} | ({c.encoding_aes_key} if c.encoding_aes_key else set()))
    return WeChatSimulator(app_id=c.app_id, secret=c.secret, token=c.token,
                           encoding_aes_key=c.encoding_aes_key or aes_key(), mode=mode,
                           callback_url=f"http://127.0.0.1:{bot_port}/wechat/callback", followers=followers)


FOLLOWERS = {"oWxFollower000000000000000p2": "Li Na (WeChat)", "oWxFollower000000000000000p1": "张伟 (微信)",
             "oWxFollower000000000stranger": "Stranger"}


async def start_stack(config: Config, commands: CommandTable | None = None, directory: dict[str, str] | None = None,
                      wechat_mode: str | None = None, channels: Sequence[Channel] = CHANNELS,
                      **simulator_options: Any) -> Stack:
    for attempt in range(3):
        # A port free a moment ago can be taken meanwhile (an outgoing connection may get it): try others.
        sim_port, bot_port = free_port(), free_port()
        config.wecom.api_base_url = f"http://127.0.0.1:{sim_port}"
        if wechat_mode is not None:
            config.wechat.api_base_url = f"http://127.0.0.1:{sim_port}/mp"
            simulator_options["wechat"] = wechat_simulator_for(config, bot_port, wechat_mode, FOLLOWERS)
        sim = simulator_for(config, bot_port, directory, **simulator_options)
        runners: list[web.AppRunner] = []
        try:
            for app, port in ((sim.create_app(), sim_port), (create_app(config, commands, channels), bot_port)):
                runner = web.AppRunner(app, access_log=None)
                runners.append(runner)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", port).start()
        except OSError:
            for runner in reversed(runners):
                await runner.cleanup()
            if attempt == 2:
                raise
            continue
        return Stack(config, sim, runners[1].app, f"http://127.0.0.1:{bot_port}", f"http://127.0.0.1:{sim_port}",
                     runners, simulator_options.get("wechat"))
    raise AssertionError("unreachable")


@pytest.fixture
async def stack(sqlite_url: str) -> AsyncIterator[Stack]:
    """Bot + simulator on SQLite with the standard members."""
    await seed(sqlite_url)
    running = await start_stack(make_config(sqlite_url))
    yield running
    await running.stop()


ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture
async def api_stack(sqlite_url: str) -> AsyncIterator[Stack]:
    """The standard stack with the admin API switched on (ADMIN_TOKEN)."""
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.admin.api_token = ADMIN_TOKEN
    running = await start_stack(config)
    yield running
    await running.stop()


@pytest.fixture
async def api(api_stack: Stack) -> AsyncIterator[tuple[Stack, aiohttp.ClientSession]]:
    """The admin API's stack and an HTTP session carrying its token."""
    async with admin_http(api_stack) as http:
        yield api_stack, http


def admin_http(stack: Stack) -> aiohttp.ClientSession:
    """An HTTP session to the stack's bot carrying the admin token."""
    return aiohttp.ClientSession(base_url=stack.bot_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


async def eventually(check, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Await `check()` until it returns something truthy (and return that), or fail after timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {result!r})")
        await asyncio.sleep(interval)


def visitor_cookie(config: Config, visitor: str) -> str:
    """A `Cookie` header value with `visitor` signed as the bot would sign it (forged ones are not believed)."""
    return f"{VISITOR_COOKIE}={sign_visitor(visitor_secret(config), visitor)}"


def serve_env(config: Config, bot_port: int, **extra: str) -> dict[str, str]:
    """The environment for a `partnerbot serve` subprocess with this config's settings."""
    w = config.wecom
    env = {**os.environ, "PARTNERBOT_SERVER_PORT": str(bot_port), "PARTNERBOT_DATABASE_URL": config.database.url,
           "PARTNERBOT_REDIS_URL": config.redis.url, "PARTNERBOT_REDIS_KEY_PREFIX": config.redis.key_prefix,
           "PARTNERBOT_WECOM_CORP_ID": w.corp_id, "PARTNERBOT_WECOM_AGENT_ID": str(w.agent_id),
           "PARTNERBOT_WECOM_SECRET": w.secret, "PARTNERBOT_WECOM_TOKEN": w.token,
           "PARTNERBOT_WECOM_ENCODING_AES_KEY": w.encoding_aes_key, "PARTNERBOT_WECOM_API_BASE_URL": w.api_base_url,
           "PARTNERBOT_SERVER_IP_HASH_SALT": config.server.ip_hash_salt,
           "PARTNERBOT_LINKS_VISITOR_SECRET": config.links.visitor_secret,
           **extra}
    env.pop("PARTNERBOT_CONFIG", None)
    return env


class ServeProcess:
    """A real `partnerbot serve` in its own process, to be killed with SIGKILL and started again."""

    def __init__(self, env: dict[str, str], cwd: Path, port: int, log: Path | None = None) -> None:
        self.env, self.cwd, self.port, self.log = env, cwd, port, log
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        # Its log lines go to `log` (appended across restarts) when given, so a test can read them.
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=self.env, cwd=self.cwd,
                                            stdout=out, stderr=subprocess.STDOUT)
        finally:
            if self.log is not None:
                out.close()  # type: ignore[union-attr]
        await eventually(self.healthy, timeout=30)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None and self.log.exists() else ""

    async def healthy(self) -> bool:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
