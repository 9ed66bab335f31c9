"""`partnerbot check`: try the configured WeCom app and Official Account for real, over HTTP, through
the clients `serve` uses, and explain every failure in one line with its fix (handlers/doctor.py says
the lines). Nothing is cached: the access tokens are fetched anew, so the Secret is really tried.
The callback settings' checks are in doctor_callback.py.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.engine import make_url

from bot.channels.api_client import ApiError, ApiUnavailable
from bot.channels.wechat_api import WeChatClient
from bot.channels.wecom_api import WeComClient
from bot.config import Config, WeChatConfig, WeComConfig
from bot.doctor_callback import CallbackChecks
from handlers.doctor import FAIL, OK, SKIP, WARN, counts, say
from handlers.menu import menu_commands
from store.db import Database, current_revision, head_revision
from store.redis import SharedKeys, create_redis

_WECOM_IP = re.compile(r"from ip:\s*([0-9A-Fa-f.:]+)")
_WECHAT_IP = re.compile(r"(?:invalid ip|requestIP:)\s*([0-9A-Fa-f.:]+)")
WECOM_SECRET_ERRCODES = frozenset({40001, 40091, 41004, 42001})
WECOM_UNREACHED_ERRCODES = frozenset({81013, 40003, 60111, 60011, 40031})
WECHAT_SECRET_ERRCODES = frozenset({40001, 40125, 41004})
WECHAT_IP_ERRCODES = frozenset({40164, 61004})
DEFAULT_API = {"wecom": WeComConfig.api_base_url, "wechat": WeChatConfig.api_base_url}


@dataclass(frozen=True)
class Finding:
    status: str
    topic: str
    text: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.topic:<20} {self.text}"


class Doctor(CallbackChecks):
    def __init__(self, config: Config, http: aiohttp.ClientSession, to: str = "",
                 report: Callable[[Finding], None] | None = None) -> None:
        self.config = config
        self.http = http
        self.to = to
        self.findings: list[Finding] = []
        self._report = report or (lambda finding: None)
        self._shared = SharedKeys(None, config.redis.key_prefix)  # in-process: never a token cached elsewhere

    def note(self, status: str, topic: str, text: str, /, **facts: Any) -> None:
        finding = Finding(status, topic, say(text, **facts))
        self.findings.append(finding)
        self._report(finding)

    @property
    def ready(self) -> bool:
        return all(f.status != FAIL for f in self.findings)

    def summary(self) -> str:
        return say("summary.ready" if self.ready else "summary.not_ready",
                   counts=counts([f.status for f in self.findings]))

    async def run(self) -> bool:
        await self.check_storage()
        self.check_public_url()
        await self.check_wecom()
        await self.check_callback("wecom")
        await self.check_official_account()
        return self.ready

    async def check_storage(self) -> None:
        """`serve` starts only on a database at the newest migration; with Redis configured it needs Redis."""
        parsed = make_url(self.config.database.url)
        url = parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
                and not Path(str(parsed.database)).exists():
            self.note(FAIL, "database", "db.missing", url=url)  # connecting would make an empty file
        else:
            db = Database(self.config.database.url)
            try:
                current = await current_revision(db)
            except Exception as err:
                self.note(FAIL, "database", "db.down", url=url, error=type(err).__name__)
            else:
                head = head_revision()
                self.note(OK if current == head else FAIL, "database", "db.ok" if current == head else "db.behind",
                          url=url, current=current or "none", head=head)
            finally:
                await db.dispose()
        if not self.config.redis.url:
            self.note(SKIP, "redis", "redis.none")
            return
        redis = create_redis(self.config.redis.url)
        assert redis is not None
        try:
            await redis.ping()
            self.note(OK, "redis", "redis.ok")
        except Exception as err:
            self.note(FAIL, "redis", "redis.down", error=type(err).__name__)
        finally:
            await redis.aclose()

    def check_public_url(self) -> None:
        """The platforms, and the customers who open tracked links, reach the bot at public_base_url."""
        url = self.config.server.public_base_url
        host = urlsplit(url).hostname or ""
        try:
            private = host == "localhost" or not ipaddress.ip_address(host).is_global
        except ValueError:
            private = False  # a name: the round trips below tell whether it answers
        if private:
            self.note(WARN, "server public URL", "server.public_url.private", url=url)
        port = urlsplit(url).port
        if self.config.wechat.enabled and port not in (None, 80, 443):
            self.note(WARN, "server public URL", "server.public_url.port", url=url, port=port)

    # ----- WeCom -------------------------------------------------------------------------------------
    async def check_wecom(self) -> None:
        w = self.config.wecom
        missing = [(key, f"PARTNERBOT_WECOM_{key.upper()}", where) for key, value, where in (
            ("corp_id", w.corp_id, "我的企业 → 企业信息 → 企业ID"),
            ("agent_id", w.agent_id > 0, "the app's AgentId"),
            ("secret", w.secret, "the app's Secret"))
            if not value]
        for key, env, where in missing:
            self.note(FAIL, "wecom settings", "wecom.missing", key=key, env=env, where=where)
        if any(key in ("corp_id", "secret") for key, _, _ in missing):
            return
        client = WeComClient(w, self.http, self._shared)
        if not await self._token(client, "wecom", "wecom token", "gettoken", self._wecom_token_refused):
            return
        self.note(OK, "wecom token", "wecom.token.ok", corp_id=w.corp_id)
        if w.agent_id <= 0:
            return
        try:
            agent = await client.call("GET", "/cgi-bin/agent/get", params={"agentid": str(w.agent_id)})
        except ApiError as err:
            if err.errcode == 60020:
                self.note(FAIL, "wecom trusted IP", "wecom.ip.60020", ip=_ip_in(err.errmsg, _WECOM_IP))
                self.note(SKIP, "wecom app", "wecom.blocked", what="agent/get, the visible range and the test message")
            elif err.errcode in (301002, 40056):
                self.note(FAIL, "wecom app", "wecom.agent.301002", agent_id=w.agent_id, code=err.errcode)
            else:
                self.note(FAIL, "wecom app", "wecom.agent.other", agent_id=w.agent_id, code=err.errcode,
                          errmsg=_short(err.errmsg))
            return
        except ApiUnavailable as err:
            self._network(err, "wecom", "wecom app", "agent/get")
            return
        self.note(OK, "wecom trusted IP", "wecom.ip.ok")
        name = str(agent.get("name") or w.agent_id)
        if agent.get("close"):
            self.note(FAIL, "wecom app", "wecom.agent.closed", name=name)
        users = [str(u.get("userid")) for u in (agent.get("allow_userinfos") or {}).get("user", [])]
        departments = [int(d) for d in (agent.get("allow_partys") or {}).get("partyid", [])]
        tags = list((agent.get("allow_tags") or {}).get("tagid", []))
        if not (users or departments or tags):
            self.note(FAIL, "wecom visible range", "wecom.range.empty", name=name)
        else:
            self.note(OK, "wecom visible range", "wecom.range.ok", name=name, users=len(users),
                      departments=len(departments), tags=len(tags))
        if self.to and (users or departments or tags):
            inside = await self._in_range(client, users, departments)
            self.note(OK if inside else WARN, "wecom visible range",
                      "wecom.range.inside" if inside else "wecom.range.outside", userid=self.to, name=name)
        await self._customer_contact(client)
        if not self.to:
            self.note(SKIP, "wecom test message", "wecom.message.skip")
            return
        await self._test_message(client, name)

    def _wecom_token_refused(self, err: ApiError) -> None:
        w = self.config.wecom
        if err.errcode in (40013, 41002):
            self.note(FAIL, "wecom token", "wecom.token.40013", corp_id=w.corp_id)
        elif err.errcode in WECOM_SECRET_ERRCODES:
            self.note(FAIL, "wecom token", "wecom.token.secret", code=err.errcode, errmsg=_short(err.errmsg))
        elif err.errcode == 60020:
            self.note(FAIL, "wecom trusted IP", "wecom.ip.60020", ip=_ip_in(err.errmsg, _WECOM_IP))
        else:
            self.note(FAIL, "wecom token", "wecom.token.other", code=err.errcode, errmsg=_short(err.errmsg))

    async def _in_range(self, client: WeComClient, users: list[str], departments: list[int]) -> bool:
        if self.to in users or 1 in departments:
            return True
        if not departments:
            return False
        try:
            user = await client.call("GET", "/cgi-bin/user/get", params={"userid": self.to})
        except (ApiError, ApiUnavailable):
            return False  # the test message says why
        return bool(set(user.get("department") or []) & set(departments))

    async def _customer_contact(self, client: WeComClient) -> None:
        """Optional (only `转发 N` needs it), so never a failure: what is missing is a warning."""
        topic = "wecom customers"
        try:
            answer = await client.call("GET", "/cgi-bin/externalcontact/get_follow_user_list")
        except ApiError as err:
            if err.errcode == 48002:
                self.note(WARN, topic, "wecom.customers.48002")
            else:
                self.note(WARN, topic, "wecom.customers.other", code=err.errcode, errmsg=_short(err.errmsg))
            return
        except ApiUnavailable as err:
            self._network(err, "wecom", topic, "externalcontact/get_follow_user_list")
            return
        members = [str(u) for u in answer.get("follow_user") or []]
        if not members:
            self.note(WARN, topic, "wecom.customers.none")
        elif self.to and self.to not in members:
            self.note(WARN, topic, "wecom.customers.outside", userid=self.to)
        else:
            self.note(OK, topic, "wecom.customers.ok", count=len(members),
                      who=say("wecom.customers.you", userid=self.to) if self.to else "")

    async def _test_message(self, client: WeComClient, name: str) -> None:
        try:
            answer = await client.send_message({"touser": self.to, "msgtype": "text",
                                                "text": {"content": say("wecom.message.text")}})
        except ApiError as err:
            if err.errcode in WECOM_UNREACHED_ERRCODES:
                self.note(FAIL, "wecom test message", "wecom.message.unreached", userid=self.to,
                          detail=f"{err.errcode} {_short(err.errmsg)}")
            elif err.errcode == 60020:
                self.note(FAIL, "wecom trusted IP", "wecom.ip.60020", ip=_ip_in(err.errmsg, _WECOM_IP))
            else:
                self.note(FAIL, "wecom test message", "wecom.message.other", userid=self.to, code=err.errcode,
                          errmsg=_short(err.errmsg))
            return
        except ApiUnavailable as err:
            self._network(err, "wecom", "wecom test message", "message/send")
            return
        if self.to in str(answer.get("invaliduser") or "").split("|"):
            self.note(FAIL, "wecom test message", "wecom.message.unreached", userid=self.to, detail="invaliduser")
        else:
            self.note(OK, "wecom test message", "wecom.message.ok", userid=self.to, name=name)

    # ----- the Official Account ----------------------------------------------------------------------
    async def check_official_account(self) -> None:
        c = self.config.wechat
        if not c.enabled:
            self.note(SKIP, "official account", "oa.skip")
            return
        if not c.secret:
            self.note(FAIL, "oa settings", "oa.missing")
        else:
            client = WeChatClient(c, self.http, self._shared)
            if await self._token(client, "wechat", "oa token", "token", self._oa_token_refused):
                self.note(OK, "oa token", "oa.token.ok", app_id=c.app_id)
                await self._oa_menu(client)
        await self.check_callback("wechat")

    def _oa_token_refused(self, err: ApiError) -> None:
        if err.errcode in (40013, 41002):
            self.note(FAIL, "oa token", "oa.token.40013", app_id=self.config.wechat.app_id)
        elif err.errcode in WECHAT_SECRET_ERRCODES:
            self.note(FAIL, "oa token", "oa.token.secret", code=err.errcode, errmsg=_short(err.errmsg))
        elif err.errcode in WECHAT_IP_ERRCODES:
            self.note(FAIL, "oa IP whitelist", "oa.token.ip", code=err.errcode, ip=_ip_in(err.errmsg, _WECHAT_IP))
        else:
            self.note(FAIL, "oa token", "oa.token.other", code=err.errcode, errmsg=_short(err.errmsg))

    async def _oa_menu(self, client: WeChatClient) -> None:
        try:
            installed = (await client.get_menu()).get("menu") or {}
        except ApiError as err:
            if err.errcode == 46003:
                self.note(WARN, "oa menu", "oa.menu.none")
            elif err.errcode == 48001:
                self.note(FAIL, "oa menu", "oa.menu.48001")
            else:
                self.note(WARN, "oa menu", "oa.menu.other", code=err.errcode, errmsg=_short(err.errmsg))
            return
        except ApiUnavailable as err:
            self._network(err, "wechat", "oa menu", "menu/get")
            return
        try:
            ours = sorted(menu_commands(installed)) == sorted(menu_commands())
        except (KeyError, TypeError, AttributeError):
            ours = False
        if ours:
            self.note(OK, "oa menu", "oa.menu.ok", buttons=len(menu_commands()))
        else:
            self.note(WARN, "oa menu", "oa.menu.foreign")

    # ----- shared --------------------------------------------------------------------------------------
    async def _token(self, client: WeComClient | WeChatClient, section: str, topic: str, api: str,
                     refused: Callable[[ApiError], None]) -> bool:
        try:
            await client.access_token()
        except ApiUnavailable as err:
            if isinstance(err.__cause__, ApiError):
                refused(err.__cause__)
            else:
                self._network(err, section, topic, api)
            return False
        return True

    def _network(self, err: ApiUnavailable, section: str, topic: str, api: str) -> None:
        settings = getattr(self.config, section)
        base = settings.api_base_url
        facts = {"host": urlsplit(base).hostname or base, "base": base, "section": section, "api": api}
        cause = err.__cause__
        if isinstance(cause, aiohttp.ClientConnectorDNSError):
            key = "net.dns"
        elif isinstance(cause, aiohttp.ClientSSLError):
            key, facts["error"] = "net.tls", type(cause).__name__
        elif isinstance(cause, aiohttp.ClientConnectorError):
            errno = cause.os_error.errno
            key, facts["error"] = "net.connect", os.strerror(errno) if errno else type(cause.os_error).__name__
        elif isinstance(cause, asyncio.TimeoutError):
            key, facts["seconds"] = "net.timeout", settings.api_timeout_seconds
        elif (status := re.match(r"HTTP (\d+)", str(err))) is not None:
            key, facts["status"], facts["default"] = "net.http", status.group(1), DEFAULT_API[section]
        else:
            key, facts["error"] = "net.other", str(err)
        self.note(FAIL, topic, key, **facts)

def _ip_in(errmsg: str, pattern: re.Pattern[str]) -> str:
    found = pattern.search(errmsg)
    return found.group(1) if found else "(the platform did not say which)"


def _short(errmsg: str) -> str:
    """errmsg up to its hint: the rest (hint, from ip, more info) is noise in one line."""
    return errmsg.split(", hint:")[0].split(" rid:")[0].strip().rstrip(",")


async def run_check(config: Config, to: str = "", report: Callable[[Finding], None] | None = None) -> Doctor:
    async with aiohttp.ClientSession() as http:
        doctor = Doctor(config, http, to, report)
        await doctor.run()
    return doctor
