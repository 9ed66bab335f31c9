"""The WeCom simulator (DESIGN §9).

It plays WeCom's side of both directions exactly as the bot sees it in production:
- API: gettoken, message/send (with WeCom's error codes, its silent per-member frequency limit and
  its duplicate check), media/upload and media/get, user/get, user/list, message/update_template_card,
  and customer contact (customers.py: externalcontact list, mass messages and Moments);
- callbacks: encrypted with WeCom's scheme (wechatpy), POSTed to the bot's callback URL with
  msg_signature/timestamp/nonce, retried when the bot does not answer 200 within the timeout.
The sandbox page on top (sandbox.py) lets a person chat as any directory member, and, when a
WeChatSimulator is passed in (wechat.py), as any follower of the simulated Official Account.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.simulator.common import ChatEntry, ChatLog, Delivery, MsgIds, _error, message_xml, msg_id_field
from bot.simulator.agent import AgentApp
from bot.simulator.customers import CustomerContact
from bot.simulator.faults import fault_routes, wecom_faults
from bot.simulator.member_media import MemberMedia
from bot.simulator.sandbox import Sandbox
from bot.simulator.wechat_protocol import xml_field
from bot.simulator.wecom_passive import Cards, PassiveAnswers
from bot.simulator.wecom_rules import CallWindows, check_content

if TYPE_CHECKING:
    from bot.simulator.wechat import WeChatSimulator

log = logging.getLogger(__name__)

# WeCom's per-app, per-member limits for message/send; excess is dropped without an error (§10).
PER_MEMBER_PER_MINUTE = 30
PER_MEMBER_PER_HOUR = 1000


class _FailureWindow:
    """WeCom refusing every message/send for `seconds`, from the `start_at`-th call on."""

    def __init__(self, errcode: int, seconds: float, start_at: int) -> None:
        self.errcode, self.seconds, self.start_at = errcode, seconds, start_at
        self.until: float | None = None

    def failing(self, call_number: int) -> bool:
        if call_number <= self.start_at:
            return False
        if self.until is None:
            self.until = time.monotonic() + self.seconds
        return time.monotonic() < self.until


class WeComSimulator(MemberMedia, PassiveAnswers):
    def __init__(self, *, corp_id: str, agent_id: int, secret: str, token: str, encoding_aes_key: str,
                 callback_url: str, callback_timeout: float = 5.0, callback_retries: int = 3,
                 directory: dict[str, str] | None = None, per_member_per_minute: int = PER_MEMBER_PER_MINUTE,
                 per_member_per_hour: int = PER_MEMBER_PER_HOUR, send_latency: float = 0.0,
                 wechat: WeChatSimulator | None = None) -> None:
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.secret = secret
        self.crypto = WeChatCrypto(token, encoding_aes_key, corp_id)
        self.callback_url = callback_url
        self.callback_timeout = callback_timeout
        self.callback_retries = callback_retries
        self.directory: dict[str, str] = dict(directory or {})
        # Departments for user/list: everyone is in the root (1); tests may add others.
        self.departments: dict[int, set[str]] = {}
        self.disabled: set[str] = set()  # WeCom status 2 (disabled) for these userids
        self.per_member_per_minute = per_member_per_minute
        self.per_member_per_hour = per_member_per_hour
        # Seconds each message/send takes, like a real API round trip.
        self.send_latency = send_latency
        self.max_concurrent_sends = 0  # 0: any number of message/send calls at once
        self._sending = 0
        # An Official Account simulated beside the WeCom app: its API is mounted at /mp and both
        # write one conversation log, so the sandbox page shows either channel.
        self.wechat = wechat
        self.log = wechat.log if wechat is not None else ChatLog()
        self.dropped: list[dict[str, Any]] = []  # sends WeCom would accept but silently not deliver
        self.api_calls: defaultdict[str, int] = defaultdict(int)
        self.tokens: dict[str, float] = {}
        self.media: dict[str, tuple[bytes, str, float]] = {}
        self.media_names: dict[str, str] = {}  # media id -> the uploaded file's name
        self._msg_ids = MsgIds(7_000_000_000_000_000_000)
        self._sends: defaultdict[str, deque[float]] = defaultdict(deque)
        # media/upload per company: 150,000 an hour and 10,000 a minute; over either, 45009.
        self.media_uploads = CallWindows([(150_000, 3600), (10_000, 60)])
        self._recent: dict[tuple[str, str], float] = {}
        self._forced_errors: deque[int] = deque()
        self.api_available = True
        self._failing: _FailureWindow | None = None
        self._http: aiohttp.ClientSession | None = None
        self._deliveries: set[asyncio.Task[Delivery]] = set()
        # Customer contact (客户联系): members' customers, mass messages, Moments (customers.py).
        self.customers = CustomerContact(self)
        # The app's visible range (agent/get) and the misconfigurations it can act out (faults.py).
        self.agent = AgentApp(self)
        self.faults = wecom_faults(self.agent)
        # Template cards sent, and the response codes of taps on them (wecom_passive.py).
        self.cards = Cards(self.log.revised)

    # ----- the aiohttp application -------------------------------------------------------------
    def create_app(self) -> web.Application:
        # A little over the 20 MB file limit, so an oversized upload gets WeCom's 40006, not a 413.
        app = web.Application(client_max_size=21 * 1024 * 1024, middlewares=[self._outage, self.faults.middleware])
        app.cleanup_ctx.append(self._http_session)
        app.add_routes([
            web.get("/cgi-bin/gettoken", self.api_gettoken),
            web.post("/cgi-bin/message/send", self.api_message_send),
            web.post("/cgi-bin/media/upload", self.api_media_upload),
            web.get("/cgi-bin/media/get", self.api_media_get),
            web.get("/cgi-bin/user/get", self.api_user_get),
            web.get("/cgi-bin/user/list", self.api_user_list),
            web.post("/cgi-bin/message/update_template_card", self.api_update_card),
            *self.customers.routes(),
            *self.agent.routes(),
            *fault_routes(self.faults, *([self.wechat.faults] if self.wechat is not None else [])),
        ])
        app.add_routes(Sandbox(self, self.wechat).routes())
        if self.wechat is not None:
            app.add_subapp("/mp", self.wechat.api_app())
        return app

    @web.middleware
    async def _outage(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.api_available and request.path.startswith("/cgi-bin/"):
            return web.Response(status=503, text="WeCom API unavailable (simulated outage)")
        return await handler(request)

    async def _http_session(self, _app: web.Application):  # type: ignore[no-untyped-def]
        self._http = aiohttp.ClientSession()
        yield
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        await self._http.close()

    # ----- test and fault-injection helpers ----------------------------------------------------
    def fail_next_sends(self, errcode: int, count: int = 1) -> None:
        """Make the next `count` message/send calls answer with this WeCom error code."""
        self._forced_errors.extend([errcode] * count)

    def fail_sends_for(self, errcode: int, seconds: float, after_sends: int = 0) -> None:
        """Answer every message/send with this error code for a while (WeCom blocking the app),
        starting once `after_sends` more sends have gone through: a point in the stream, not in time."""
        self._failing = _FailureWindow(errcode, seconds, self.api_calls["message/send"] + after_sends)

    @property
    def entries(self) -> list[ChatEntry]:
        return self.log.entries

    def bot_messages(self, userid: str | None = None) -> list[ChatEntry]:
        return self.log.bot_messages("wecom", userid)

    async def wait_for_bot_messages(self, userid: str, count: int, timeout: float = 10.0) -> list[ChatEntry]:
        return await self.log.wait_for_bot_messages("wecom", userid, count, timeout)

    # ----- callbacks to the bot ----------------------------------------------------------------
    def text_xml(self, userid: str, text: str, msg_id: str, create_time: int) -> str:
        return message_xml(self.corp_id, userid, create_time, MsgType="text", Content=text,
                           MsgId=msg_id_field(msg_id), AgentID=self.agent_id)

    def card_event_xml(self, userid: str, key: str, task_id: str, create_time: int,
                       response_code: str | None = None) -> str:
        return message_xml(self.corp_id, userid, create_time, MsgType="event", Event="template_card_event",
                           EventKey=key, TaskId=task_id, CardType="button_interaction",
                           ResponseCode=response_code or secrets.token_hex(16), AgentID=self.agent_id)

    def encrypt_callback(self, plaintext: str, timestamp: int | None = None) -> tuple[str, bytes]:
        """The query string and body WeCom POSTs for one message."""
        timestamp = timestamp or int(time.time())
        nonce = str(secrets.randbelow(10**10))
        envelope = self.crypto.encrypt_message(plaintext, nonce, str(timestamp))
        encrypted = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", envelope).group(1)  # type: ignore[union-attr]
        signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", envelope).group(1)  # type: ignore[union-attr]
        body = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
        query = urlencode({"msg_signature": signature, "timestamp": str(timestamp), "nonce": nonce})
        return query, body

    async def deliver(self, plaintext: str, msg_id: str) -> Delivery:
        """POST one callback like WeCom: wait up to the timeout for a 200, else retry; then show the
        member any passive reply in the answer."""
        assert self._http is not None, "the simulator app is not running"
        delivery = Delivery(msg_id)
        userid = xml_field(plaintext, "FromUserName")
        card_task_id = xml_field(plaintext, "TaskId") if xml_field(plaintext, "Event") == "template_card_event" else ""
        for _attempt in range(1 + self.callback_retries):
            query, body = self.encrypt_callback(plaintext)
            try:
                async with self._http.post(f"{self.callback_url}?{query}", data=body,
                                           headers={"Content-Type": "text/xml"},
                                           timeout=aiohttp.ClientTimeout(total=self.callback_timeout)) as response:
                    answer = await response.read()
                    delivery.attempts.append(str(response.status))
                    if response.status == 200:
                        delivery.error, delivery.reply = self.take_answer(userid, answer, card_task_id)
                        return delivery
            except (asyncio.TimeoutError, aiohttp.ClientError) as err:
                delivery.attempts.append("timeout" if isinstance(err, asyncio.TimeoutError) else "error")
            await asyncio.sleep(0.2)
        return delivery

    async def send_text(self, userid: str, text: str) -> Delivery:
        """A member types `text` in WeCom; returns once the bot acknowledged (or WeCom gave up)."""
        self.directory.setdefault(userid, userid)
        entry = self.record(userid, "user", "text", {"content": text}, status="delivering")
        msg_id = str(next(self._msg_ids))
        delivery = await self.deliver(self.text_xml(userid, text, msg_id, int(time.time())), msg_id)
        entry.status = "delivered" if delivery.acknowledged else "failed"
        self.log.changed.set()
        return delivery

    async def click(self, userid: str, key: str, task_id: str) -> Delivery:
        entry = self.record(userid, "user", "click", {"key": key, "task_id": task_id}, status="delivering")
        response_code = secrets.token_hex(16)
        self.cards.tapped(userid, task_id, response_code)
        delivery = await self.deliver(self.card_event_xml(userid, key, task_id, int(time.time()), response_code),
                                      f"click:{task_id}")
        entry.status = "delivered" if delivery.acknowledged else "failed"
        self.log.changed.set()
        return delivery

    def start(self, coro: Any) -> None:
        """Run a delivery in the background (the sandbox page answers at once); cancelled at cleanup."""
        task = asyncio.ensure_future(coro)
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def record(self, userid: str, direction: str, msgtype: str, body: dict[str, Any], status: str = "ok") -> ChatEntry:
        return self.log.record("wecom", userid, direction, msgtype, body, status)

    # ----- WeCom API -----------------------------------------------------------------------------
    async def api_gettoken(self, request: web.Request) -> web.Response:
        self.api_calls["gettoken"] += 1
        corpid, secret = request.query.get("corpid", ""), request.query.get("corpsecret", "")
        if not corpid:
            return _error(41002, "corpid missing")
        if not secret:
            return _error(41004, "corpsecret missing")
        if corpid != self.corp_id:
            return _error(40013, "invalid corpid")
        if not secrets.compare_digest(secret, self.secret):
            return _error(40001, "invalid credential")
        token = secrets.token_urlsafe(48)
        self.tokens[token] = time.time() + 7200
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    def _check_token(self, request: web.Request) -> web.Response | None:
        token = request.query.get("access_token", "")
        if not token:
            return _error(41001, "access_token missing")
        expires = self.tokens.get(token)
        if expires is None:
            return _error(40014, "invalid access_token")
        if expires < time.time():
            return _error(42001, "access_token expired")
        return None

    async def api_message_send(self, request: web.Request) -> web.Response:
        self.api_calls["message/send"] += 1
        # WeCom refuses calls over an app's concurrency for one API (45033), without saying the number.
        if self.max_concurrent_sends and self._sending >= self.max_concurrent_sends:
            self.api_calls["message/send 45033"] += 1
            return _error(45033, "api concurrent out of limit")
        self._sending += 1
        try:
            return await self._message_send(request)
        finally:
            self._sending -= 1

    async def _message_send(self, request: web.Request) -> web.Response:
        if self.send_latency:
            await asyncio.sleep(self.send_latency)
        if (problem := self._check_token(request)) is not None:
            return problem
        code = None
        if self._forced_errors:
            code = self._forced_errors.popleft()
        elif self._failing is not None and self._failing.failing(self.api_calls["message/send"]):
            code = self._failing.errcode
        if code is not None:
            return _error(code, {-1: "system busy", 45009: "api freq out of limit",
                                 45033: "api concurrent out of limit"}.get(code, "forced error"))
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(47001, "data format error")
        if not isinstance(body, dict):
            return _error(47001, "data format error")
        if body.get("agentid") != self.agent_id:
            return _error(40056, "invalid agentid")
        msgtype = body.get("msgtype")
        if (problem := check_content(msgtype, body, self.live_media)) is not None:
            return problem
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        valid = [u for u in users if u in self.directory and self.agent.can_reach(u)]
        invalid = [u for u in users if u not in valid]
        if not valid:
            return _error(81013, "user & party & tag all invalid")
        now = time.time()
        for user in valid:
            content = json.dumps(body.get(msgtype), sort_keys=True, ensure_ascii=False)
            if body.get("enable_duplicate_check") == 1:
                window = min(int(body.get("duplicate_check_interval", 1800)), 4 * 3600)
                if now - self._recent.get((user, content), float("-inf")) < window:
                    self.dropped.append({"touser": user, "reason": "duplicate", "body": body})
                    continue
            sends = self._sends[user]
            while sends and sends[0] < now - 3600:
                sends.popleft()
            if len(sends) >= self.per_member_per_hour or \
                    sum(1 for t in sends if t >= now - 60) >= self.per_member_per_minute:
                self.dropped.append({"touser": user, "reason": "frequency", "body": body})
                continue
            sends.append(now)
            self._recent[(user, content)] = now
            entry = self.record(user, "bot", msgtype, self._as_shown(msgtype, body.get(msgtype) or {}))
            if msgtype == "template_card":
                self.cards.sent(entry)
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid),
                                  "msgid": secrets.token_hex(12)})

    async def api_user_get(self, request: web.Request) -> web.Response:
        if (problem := self._check_token(request)) is not None:
            return problem
        userid = request.query.get("userid", "")
        if userid not in self.directory:
            return _error(60111, "userid not found")
        return web.json_response({"errcode": 0, "errmsg": "ok", "userid": userid, "name": self.directory[userid],
                                  "department": self.agent.departments_of(userid), "status": 1})

    async def api_user_list(self, request: web.Request) -> web.Response:
        """user/list: a department's members (department_id; fetch_child=1 includes sub-departments)."""
        if (problem := self._check_token(request)) is not None:
            return problem
        raw = request.query.get("department_id", "")
        if not raw.isdecimal() or (int(raw) != 1 and int(raw) not in self.departments):
            return _error(60123, "invalid party id")
        department = int(raw)
        if department == 1 and request.query.get("fetch_child") == "1":
            userids = list(self.directory)
        else:
            userids = [u for u in self.directory if u in self.departments.get(department, set())
                       or (department == 1 and not any(u in members for members in self.departments.values()))]
        self.api_calls["user/list"] += 1
        return web.json_response({"errcode": 0, "errmsg": "ok", "userlist": [
            {"userid": u, "name": self.directory[u], "department": [department], "status": 2 if u in self.disabled else 1}
            for u in userids]})

__all__ = ["WeComSimulator", "Delivery", "ChatEntry", "ChatLog"]
