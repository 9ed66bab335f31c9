"""The WeCom simulator (DESIGN §9).

It plays WeCom's side of both directions exactly as the bot sees it in production:
- API: gettoken, message/send (with WeCom's error codes, its silent per-member frequency limit and
  its duplicate check), media/upload and media/get, user/get, user/list, message/update_template_card;
- callbacks: encrypted with WeCom's scheme (wechatpy), POSTed to the bot's callback URL with
  msg_signature/timestamp/nonce, retried when the bot does not answer 200 within the timeout.
The sandbox page on top lets a person chat as any directory member.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from wechatpy.enterprise.crypto import WeChatCrypto

log = logging.getLogger(__name__)

SANDBOX_PAGE = Path(__file__).resolve().parents[2] / "assets" / "pages" / "sandbox.html"
USERID_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MAX_CONTENT_BYTES = 2048
# WeCom's per-app, per-member limits for message/send; excess is dropped without an error (§10).
PER_MEMBER_PER_MINUTE = 30
PER_MEMBER_PER_HOUR = 1000
MEDIA_LIFETIME_SECONDS = 3 * 86400


@dataclass
class ChatEntry:
    id: int
    userid: str
    direction: str  # "user" (typed into WeCom) or "bot" (sent by the app)
    msgtype: str
    body: dict[str, Any]
    time: float
    status: str = "ok"  # user entries: delivering / delivered / failed

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "userid": self.userid, "direction": self.direction, "msgtype": self.msgtype,
                "body": self.body, "time": self.time, "status": self.status}


@dataclass
class Delivery:
    """What happened to one callback: the HTTP status of each attempt ("timeout" when none)."""

    msg_id: str
    attempts: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return bool(self.attempts) and self.attempts[-1] == "200"


class WeComSimulator:
    def __init__(self, *, corp_id: str, agent_id: int, secret: str, token: str, encoding_aes_key: str,
                 callback_url: str, callback_timeout: float = 5.0, callback_retries: int = 3,
                 directory: dict[str, str] | None = None, per_member_per_minute: int = PER_MEMBER_PER_MINUTE,
                 per_member_per_hour: int = PER_MEMBER_PER_HOUR, send_latency: float = 0.0) -> None:
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
        self.entries: list[ChatEntry] = []
        self.dropped: list[dict[str, Any]] = []  # sends WeCom would accept but silently not deliver
        self.api_calls: defaultdict[str, int] = defaultdict(int)
        self.tokens: dict[str, float] = {}
        self.media: dict[str, tuple[bytes, str, float]] = {}
        self._ids = itertools.count(1)
        self._msg_ids = itertools.count(7_000_000_000_000_000_000)
        self._sends: defaultdict[str, deque[float]] = defaultdict(deque)
        self._recent: dict[tuple[str, str], float] = {}
        self._forced_errors: deque[int] = deque()
        self.api_available = True
        self._failing: tuple[int, float] | None = None
        self._changed = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._deliveries: set[asyncio.Task[Delivery]] = set()

    # ----- the aiohttp application -------------------------------------------------------------
    def create_app(self) -> web.Application:
        app = web.Application(client_max_size=20 * 1024 * 1024, middlewares=[self._outage])
        app.cleanup_ctx.append(self._http_session)
        app.add_routes([
            web.get("/cgi-bin/gettoken", self.api_gettoken),
            web.post("/cgi-bin/message/send", self.api_message_send),
            web.post("/cgi-bin/media/upload", self.api_media_upload),
            web.get("/cgi-bin/media/get", self.api_media_get),
            web.get("/cgi-bin/user/get", self.api_user_get),
            web.get("/cgi-bin/user/list", self.api_user_list),
            web.post("/cgi-bin/message/update_template_card", self.api_update_card),
            web.get("/", self.sandbox_page),
            web.get("/sandbox/api/members", self.sandbox_members),
            web.get("/sandbox/api/messages", self.sandbox_messages),
            web.post("/sandbox/api/send", self.sandbox_send),
            web.post("/sandbox/api/click", self.sandbox_click),
            web.get("/sandbox/media/{media_id}", self.sandbox_media),
        ])
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

    def fail_sends_for(self, errcode: int, seconds: float) -> None:
        """Answer every message/send with this error code for a while (WeCom blocking the app)."""
        self._failing = (errcode, time.monotonic() + seconds)

    def bot_messages(self, userid: str | None = None) -> list[ChatEntry]:
        return [e for e in self.entries if e.direction == "bot" and (userid is None or e.userid == userid)]

    async def wait_for_bot_messages(self, userid: str, count: int, timeout: float = 10.0) -> list[ChatEntry]:
        deadline = time.monotonic() + timeout
        while len(self.bot_messages(userid)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{userid} got {len(self.bot_messages(userid))} of {count} messages")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass
        return self.bot_messages(userid)

    # ----- callbacks to the bot ----------------------------------------------------------------
    def text_xml(self, userid: str, text: str, msg_id: str, create_time: int) -> str:
        return (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                f"<FromUserName><![CDATA[{_cdata(userid)}]]></FromUserName><CreateTime>{create_time}</CreateTime>"
                f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{_cdata(text)}]]></Content>"
                f"<MsgId>{msg_id}</MsgId><AgentID>{self.agent_id}</AgentID></xml>")

    def card_event_xml(self, userid: str, key: str, task_id: str, create_time: int) -> str:
        return (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                f"<FromUserName><![CDATA[{_cdata(userid)}]]></FromUserName><CreateTime>{create_time}</CreateTime>"
                f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event>"
                f"<EventKey><![CDATA[{_cdata(key)}]]></EventKey><TaskId><![CDATA[{_cdata(task_id)}]]></TaskId>"
                f"<CardType><![CDATA[button_interaction]]></CardType>"
                f"<ResponseCode><![CDATA[{secrets.token_hex(16)}]]></ResponseCode>"
                f"<AgentID>{self.agent_id}</AgentID></xml>")

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
        """POST one callback like WeCom: wait up to the timeout for a 200, else retry."""
        assert self._http is not None, "the simulator app is not running"
        delivery = Delivery(msg_id)
        for _attempt in range(1 + self.callback_retries):
            query, body = self.encrypt_callback(plaintext)
            try:
                async with self._http.post(f"{self.callback_url}?{query}", data=body,
                                           headers={"Content-Type": "text/xml"},
                                           timeout=aiohttp.ClientTimeout(total=self.callback_timeout)) as response:
                    await response.read()
                    delivery.attempts.append(str(response.status))
                    if response.status == 200:
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
        self._changed.set()
        return delivery

    async def click(self, userid: str, key: str, task_id: str) -> Delivery:
        entry = self.record(userid, "user", "click", {"key": key, "task_id": task_id}, status="delivering")
        delivery = await self.deliver(self.card_event_xml(userid, key, task_id, int(time.time())), f"click:{task_id}")
        entry.status = "delivered" if delivery.acknowledged else "failed"
        self._changed.set()
        return delivery

    def _start(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def record(self, userid: str, direction: str, msgtype: str, body: dict[str, Any], status: str = "ok") -> ChatEntry:
        entry = ChatEntry(next(self._ids), userid, direction, msgtype, body, time.time(), status)
        self.entries.append(entry)
        self._changed.set()
        return entry

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
        if self.send_latency:
            await asyncio.sleep(self.send_latency)
        if (problem := self._check_token(request)) is not None:
            return problem
        code = None
        if self._forced_errors:
            code = self._forced_errors.popleft()
        elif self._failing and self._failing[1] > time.monotonic():
            code = self._failing[0]
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
        if (problem := _check_content(msgtype, body, self.media)) is not None:
            return problem
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        valid = [u for u in users if u in self.directory]
        invalid = [u for u in users if u not in self.directory]
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
            self.record(user, "bot", msgtype, body.get(msgtype) or {})
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid),
                                  "msgid": secrets.token_hex(12)})

    async def api_media_upload(self, request: web.Request) -> web.Response:
        self.api_calls["media/upload"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "file"):
            return _error(40004, "invalid media type")
        try:
            form = await request.post()
        except ValueError:
            return _error(41005, "media data missing")
        media = form.get("media")
        if not isinstance(media, web.FileField):
            return _error(41005, "media data missing")
        content = media.file.read()
        if kind == "image" and (len(content) > 10 * 1024 * 1024 or not _is_jpg_or_png(content)):
            return _error(40005, "invalid file type or size")
        media_id = secrets.token_urlsafe(32)
        self.media[media_id] = (content, media.content_type or "application/octet-stream", time.time())
        return web.json_response({"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
                                  "created_at": str(int(time.time()))})

    async def api_media_get(self, request: web.Request) -> web.Response:
        if (problem := self._check_token(request)) is not None:
            return problem
        return self._media_response(request.query.get("media_id", ""))

    async def api_user_get(self, request: web.Request) -> web.Response:
        if (problem := self._check_token(request)) is not None:
            return problem
        userid = request.query.get("userid", "")
        if userid not in self.directory:
            return _error(60111, "userid not found")
        return web.json_response({"errcode": 0, "errmsg": "ok", "userid": userid, "name": self.directory[userid],
                                  "status": 1})

    async def api_user_list(self, request: web.Request) -> web.Response:
        """user/list: a department's members (department_id; fetch_child=1 includes sub-departments)."""
        if (problem := self._check_token(request)) is not None:
            return problem
        raw = request.query.get("department_id", "")
        if not raw.isdigit() or (int(raw) != 1 and int(raw) not in self.departments):
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

    async def api_update_card(self, request: web.Request) -> web.Response:
        if (problem := self._check_token(request)) is not None:
            return problem
        try:
            body = await request.json()
        except ValueError:
            return _error(47001, "data format error")
        if not isinstance(body, dict) or not body.get("response_code"):
            return _error(40078, "invalid response_code")
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def _media_response(self, media_id: str) -> web.Response:
        item = self.media.get(media_id)
        if item is None or item[2] < time.time() - MEDIA_LIFETIME_SECONDS:
            return _error(40007, "invalid media_id")
        return web.Response(body=item[0], content_type=item[1])

    # ----- sandbox page --------------------------------------------------------------------------
    async def sandbox_page(self, _request: web.Request) -> web.Response:
        return web.Response(text=SANDBOX_PAGE.read_text(encoding="utf-8"), content_type="text/html",
                            headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                     "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"})

    async def sandbox_members(self, _request: web.Request) -> web.Response:
        return web.json_response({"members": [{"userid": u, "name": n} for u, n in self.directory.items()]})

    async def sandbox_messages(self, request: web.Request) -> web.Response:
        userid = request.query.get("userid", "")
        after = int(request.query["after"]) if request.query.get("after", "").isdigit() else 0
        entries = [e.as_json() for e in self.entries if e.userid == userid and e.id > after]
        return web.json_response({"messages": entries})

    async def _sandbox_body(self, request: web.Request, *fields: str) -> dict[str, str] | web.Response:
        # JSON only: a cross-site form or text/plain POST cannot chat as someone else.
        if request.content_type != "application/json":
            return web.json_response({"error": "send JSON (Content-Type: application/json)"}, status=415)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "send JSON"}, status=400)
        if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in fields):
            return web.json_response({"error": f"need {', '.join(fields)}"}, status=400)
        if not USERID_PATTERN.match(body["userid"]):
            return web.json_response({"error": "userid must be 1-64 letters, digits or _-.@"}, status=400)
        return body

    async def sandbox_send(self, request: web.Request) -> web.Response:
        body = await self._sandbox_body(request, "userid", "text")
        if isinstance(body, web.Response):
            return body
        if not body["text"].strip() or len(body["text"]) > 2048:
            return web.json_response({"error": "text must be 1-2048 characters"}, status=400)
        self._start(self.send_text(body["userid"], body["text"]))
        return web.json_response({"ok": True})

    async def sandbox_click(self, request: web.Request) -> web.Response:
        body = await self._sandbox_body(request, "userid", "key", "task_id")
        if isinstance(body, web.Response):
            return body
        self._start(self.click(body["userid"], body["key"], body["task_id"]))
        return web.json_response({"ok": True})

    async def sandbox_media(self, request: web.Request) -> web.Response:
        return self._media_response(request.match_info["media_id"])


def _cdata(text: str) -> str:
    return text.replace("]]>", "]]]]><![CDATA[>")


def _error(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


def _is_jpg_or_png(content: bytes) -> bool:
    return content.startswith(b"\x89PNG\r\n\x1a\n") or content.startswith(b"\xff\xd8\xff")


def _check_content(msgtype: Any, body: dict[str, Any], media: dict[str, Any]) -> web.Response | None:
    part = body.get(msgtype) if isinstance(msgtype, str) else None
    if msgtype not in ("text", "markdown", "image", "textcard", "template_card", "news"):
        return _error(40008, "invalid message type")
    if not isinstance(part, dict):
        return _error(41011, f"missing {msgtype}")
    if msgtype in ("text", "markdown"):
        content = part.get("content")
        if not isinstance(content, str) or not content:
            return _error(44004, "empty content")
        if len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
            return _error(45002, "content size out of limit")
    if msgtype == "image" and part.get("media_id") not in media:
        return _error(40007, "invalid media_id")
    if msgtype == "template_card" and part.get("card_type") not in (
            "text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"):
        return _error(40058, "invalid card_type")
    return None


__all__ = ["WeComSimulator", "Delivery", "ChatEntry"]
