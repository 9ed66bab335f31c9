"""The aiohttp application: typed state (AppKey) and one cleanup context per resource."""
from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from functools import partial
from pathlib import Path
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp import web

from bot.web.admin.api import admin_routes
from bot.web.admin.content import content_routes
from bot.web.admin.partners import partner_routes
from bot.web.admin.stats import stats_routes
from bot.channels import CHANNELS
from bot.channels.base import Channel, Pipeline, SendingKit
from bot.channels.customers import WeComCustomers
from bot.forwarding import send_forwards
from bot.channels.downloads import WeComDownloads
from bot.channels.wecom_api import WeComClient
from bot.channels.member import MemberAddresses
from bot.config import Config
from bot.web.clicks import ClickRecorder
from bot.pipeline.inbox import InboxProcessor
from bot.jobs import run_periodically, schedule
from bot.retention import RetentionJob
from bot.web.invite import invite_routes
from bot.web.downloads import download_routes, stored_bytes
from bot.web.landing import LeadForm, landing_routes
from bot.web.links import LinkCache, Visitors, redirect_routes, unavailable_page, visitor_secret
from bot.logs import request_ids
from bot.metrics import CLICK_LAG, OUTBOX_BACKLOG, OUTBOX_DEFERRED, OUTBOX_PARKED, exposition
from bot.pipeline.outbox import OutboxSender
from bot.render.posters import PosterRenderer
from bot.pipeline.ratelimit import MemberRateLimiter
from bot.pipeline.router import Router
from handlers.context import CommandTable
from handlers import command_table
from store.db import Database, ping
from store import outbox as outbox_store
from store.redis import SharedKeys, create_redis, warn_if_not_durable

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", Database)
SHARED = web.AppKey("shared", SharedKeys)
OUTBOX = web.AppKey("outbox", OutboxSender)
INBOX = web.AppKey("inbox", InboxProcessor)
CLICKS = web.AppKey("clicks", ClickRecorder)
VISITORS = web.AppKey("visitors", Visitors)
ADMIN_PREFIX = "/api"


def create_app(config: Config, commands: CommandTable | None = None,
               channels: Sequence[Channel] = CHANNELS) -> web.Application:
    visitors = Visitors(_ip_hash_salt(config), config.server.trusted_proxies, visitor_secret(config),
                        secure_cookies=config.server.public_base_url.startswith("https://"))
    # Refused requests are logged with the salted IP hash clicks use, never the address itself.
    # (config_dict: in the admin sub-application below, request.app is that sub-application.)
    admin, require_token = admin_routes(config, lambda request: request.config_dict[DB], visitors.ip_hash)
    admin += stats_routes(config, lambda request: request.config_dict[DB])
    admin += partner_routes(config, lambda request: request.config_dict[DB])
    admin += content_routes(config, lambda request: request.config_dict[DB])
    # Every request passes through each middleware of its application: the admin API's token check
    # guards only its own sub-application, so a tracked redirect (the hot path) does not pay for it.
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=[request_ids(unavailable_page)])
    admin_app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=[require_token])
    admin_app.add_routes([web.RouteDef(r.method, r.path.removeprefix(ADMIN_PREFIX), r.handler, r.kwargs)
                          for r in admin])
    app[CONFIG] = config
    commands = commands or command_table()
    channels = [channel for channel in channels if channel.enabled(config)]

    async def resources(app: web.Application) -> AsyncIterator[None]:
        db = Database(config.database.url, config.database.statement_timeout_seconds)
        redis = create_redis(config.redis.url)
        shared = SharedKeys(redis, config.redis.key_prefix)
        http = aiohttp.ClientSession()
        kit = SendingKit(http, shared, PosterRenderer(Path(config.posters.templates_dir), Path(config.posters.cache_dir)),
                         sources=lambda content_id: stored_bytes(db, content_id))
        senders = {channel.name: channel.sender(config, kit) for channel in channels}
        limiters = {channel.name: MemberRateLimiter(redis, f"{config.redis.key_prefix}{channel.name}:",
                                                    limits.per_minute, limits.per_hour)
                    for channel in channels if (limits := channel.send_limits(config)) is not None}
        outbox = OutboxSender(db, senders, config.outbox, limiters, MemberAddresses(db, senders))
        # `forward N` and the job reading its results back reach WeCom's customer contact; `keep` fetches
        # what marketers send (media/get).
        wecom = WeComClient(config.wecom, http, shared) if any(c.name == "wecom" for c in channels) else None
        customers = WeComCustomers(wecom) if wecom is not None else None
        media = WeComDownloads(wecom) if wecom is not None else None
        inbox = InboxProcessor(db, shared, Router(commands, config, customers, media), outbox, config,
                               after_commit=partial(send_forwards, db, customers) if customers is not None else None)
        clicks = ClickRecorder(db, redis, config.redis.key_prefix, config.links.flood_window_seconds,
                               flush_interval=config.links.flush_interval_seconds, timezone=config.server.timezone,
                               reclaim_after=config.links.stream_reclaim_seconds)
        app[DB], app[SHARED], app[OUTBOX], app[INBOX] = db, shared, outbox, inbox
        app[CLICKS] = clicks
        retention = RetentionJob(db, config.retention, config.retention.check_seconds, kit.posters,
                                 config.retention.posters_days, clicks)
        await warn_if_not_durable(redis)
        interval = config.inbox.sweep_interval_seconds
        stop = asyncio.Event()
        loops = [
            asyncio.create_task(run_periodically("inbox sweep", inbox.sweep, interval, stop)),
            asyncio.create_task(outbox.run(interval, stop)),
            asyncio.create_task(clicks.run(stop)),  # writes what is buffered before it ends
            *(asyncio.create_task(run_periodically(job.name, job.run, job.every, stop, job.first_delay))
              for job in schedule(db, config, commands, outbox.kick, customers, retention)),
        ]
        try:
            yield
        finally:
            # Ask the loops to stop between steps (cancelling one inside a query can leave a
            # database connection half-closed); cancel only what does not stop in time.
            stop.set()
            _, stuck = await asyncio.wait(loops, timeout=10)
            for loop in stuck:
                loop.cancel()
            for failure in await asyncio.gather(*loops, return_exceptions=True):
                if isinstance(failure, Exception):
                    log.error("a background loop ended with %s during shutdown", type(failure).__name__)
            # Let work in progress finish, so a graceful stop leaves nothing half-done.
            await inbox.drain()
            await form.notices.drain()  # it may wake the outbox: before the outbox drains
            await outbox.drain()
            await http.close()
            if redis is not None:
                await redis.aclose()
            await db.dispose()

    app.cleanup_ctx.append(resources)

    pipeline = Pipeline(db=lambda: app[DB], inbox=lambda: app[INBOX], outbox=lambda: app[OUTBOX])
    for channel in channels:
        app.add_routes(channel.routes(config, pipeline))
    links = LinkCache(lambda request: request.app[DB])
    app[VISITORS] = visitors
    app.add_routes(redirect_routes(links, lambda request: request.app[CLICKS], visitors))
    form = LeadForm(visitors, config, lambda request: request.app[DB], lambda request: request.app[OUTBOX],
                    lambda request: request.app[SHARED])
    app.add_routes(landing_routes(form, links))
    app.add_routes(download_routes(links, visitors, form, lambda request: request.app[DB],
                                   lambda request: request.app[CLICKS], visitors.secret))
    app.add_routes(invite_routes(config, lambda request: request.app[DB]))
    app.add_routes([web.get("/healthz", healthz), web.get("/metrics", metrics)])
    app.add_subapp(ADMIN_PREFIX, admin_app)
    return app


def _ip_hash_salt(config: Config) -> bytes:
    salt = config.server.ip_hash_salt.encode()
    if not salt:
        log.warning("[server] ip_hash_salt is not set: visitor IP hashes will differ between instances and restarts")
        salt = secrets.token_bytes(32)
    return salt


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format. With an admin API token set, scrapers send it as a bearer token."""
    token = request.app[CONFIG].admin.api_token
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and not hmac.compare_digest(given.encode(), token.encode()):
        return web.Response(status=401, text="a valid bearer token is required",
                            headers={"WWW-Authenticate": 'Bearer realm="partnerbot"'})
    async with request.app[DB].session() as session:
        by_status = await outbox_store.backlog(session)
    OUTBOX_BACKLOG.set(by_status.get("pending", 0) + by_status.get("sending", 0))
    OUTBOX_PARKED.set(by_status.get("waiting", 0))
    OUTBOX_DEFERRED.set(by_status.get("deferred", 0))
    CLICK_LAG.set(await request.app[CLICKS].lag())
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        async with request.app[DB].session() as session:
            await ping(session)
        checks["database"] = "ok"
    except Exception as err:
        checks["database"] = f"error: {type(err).__name__}"
    shared = request.app[SHARED]
    if shared.redis is None:
        checks["redis"] = "not configured"
    else:
        try:
            await shared.redis.ping()
            checks["redis"] = "ok"
        except Exception as err:
            checks["redis"] = f"error: {type(err).__name__}"
    healthy = all(v in ("ok", "not configured") for v in checks.values())
    return web.json_response({"ok": healthy, **checks}, status=200 if healthy else 503)
