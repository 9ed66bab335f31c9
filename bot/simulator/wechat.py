"""The WeChat Official Account simulator (公众号 / service account).

It plays WeChat's side of both directions exactly as the bot sees it in production:
- API (an aiohttp sub-application; the WeCom simulator mounts it at /mp): token, message/custom/send
  with the 48-hour window and the per-interaction quota, media/upload and media/get, menu/create,
  menu/get and menu/delete, with WeChat's error codes (HTTP 200 and a JSON errcode);
- callbacks: plaintext, compatible or safe mode (wechatpy's Official Account crypto), signed with
  signature = sha1 of the sorted token, timestamp and nonce, retried with the same MsgId when the
  bot does not answer within 5 s; a passive reply in the answer is checked like WeChat checks it.
The protocol's pure parts (signatures, payload rules, replies) are in wechat_protocol.py.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict, deque
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from wechatpy.crypto import WeChatCrypto

from bot.simulator.common import (ChatEntry, ChatLog, Delivery, MsgIds, TemporaryMedia, _error, _is_jpg_or_png,
                                  message_xml, msg_id_field)
from bot.simulator.faults import wechat_faults
from bot.simulator.wechat_protocol import (KEY_TYPES, check_custom_message, check_menu, interaction_kind,
                                           menu_as_stored, open_reply, parse_passive_reply, parse_xml, signature,
                                           xml_field)

MODES = ("plain", "compatible", "safe")
TOKEN_SECONDS = 7200
# A new access_token does not kill the previous one at once: both work for 5 minutes.
TOKEN_OVERLAP_SECONDS = 300
WINDOW_SECONDS = 48 * 3600
# Since 2023 each interaction allows only so many customer-service messages, for so long.
QUOTAS = {"message": (5, WINDOW_SECONDS), "click": (3, 60), "subscribe": (3, 60)}
MAX_IMAGE_BYTES = 10 * 1024 * 1024
INVALID_TOKEN = "invalid credential, access_token is invalid or not latest"
FORCED_ERRMSG = {-1: "system error", 45009: "reach max api daily quota limit", 45047: "out of response count limit",
                 45015: "response out of time limit or subscription is canceled", 43004: "require subscribe"}
SERVICE_FAILURE = "该公众号提供的服务出现故障，请稍后再试"


class WeChatSimulator(TemporaryMedia):
    def __init__(self, *, app_id: str, secret: str, token: str, encoding_aes_key: str, callback_url: str,
                 mode: str = "safe", original_id: str = "gh_partnerbot0001", callback_timeout: float = 5.0,
                 callback_retries: int = 2, followers: dict[str, str] | None = None,
                 reply_quota: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.app_id, self.secret, self.token, self.mode = app_id, secret, token, mode
        self.original_id = original_id
        self.crypto = WeChatCrypto(token, encoding_aes_key, app_id)
        self.callback_url = callback_url
        self.callback_timeout = callback_timeout
        self.callback_retries = callback_retries
        self.followers: dict[str, str] = dict(followers or {})  # openid -> nickname
        self.unfollowed: set[str] = set()
        # When each follower last messaged or triggered an event; tests move it back to close the window.
        self.last_interaction: dict[str, float] = {}
        # False: only the 48-hour window applies, not the per-interaction message counts.
        self.reply_quota = reply_quota
        self._grants: defaultdict[str, list[list[Any]]] = defaultdict(list)  # openid -> [kind, at, used]
        self.menu: dict[str, Any] | None = None
        self.api_calls: defaultdict[str, int] = defaultdict(int)
        self.tokens: dict[str, float] = {}  # access_token -> expiry (epoch seconds)
        self.media: dict[str, tuple[bytes, str, float]] = {}
        self.media_names: dict[str, str] = {}  # none: the bot's uploads need no name on WeChat
        self.api_available = True
        self.log = ChatLog()
        self._forced_errors: deque[int] = deque()
        self._msg_ids = MsgIds(24_100_000_000_000_001)  # 64-bit MsgIds, like WeChat's
        self._http: aiohttp.ClientSession | None = None
        self._deliveries: set[asyncio.Task[Any]] = set()
        self.faults = wechat_faults(self)

    # ----- the aiohttp application -------------------------------------------------------------
    def api_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_IMAGE_BYTES + 1024 * 1024,
                              middlewares=[self._outage, self.faults.middleware])
        app.cleanup_ctx.append(self._http_session)
        app.add_routes([
            web.get("/cgi-bin/token", self.api_token),
            web.post("/cgi-bin/message/custom/send", self.api_custom_send),
            web.post("/cgi-bin/media/upload", self.api_media_upload),
            web.get("/cgi-bin/media/get", self.api_media_get),
            web.post("/cgi-bin/menu/create", self.api_menu_create),
            web.get("/cgi-bin/menu/get", self.api_menu_get),
            web.get("/cgi-bin/menu/delete", self.api_menu_delete),
        ])
        return app

    @web.middleware
    async def _outage(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.api_available:
            return web.Response(status=503, text="WeChat API unavailable (simulated outage)")
        return await handler(request)

    async def _http_session(self, _app: web.Application):  # type: ignore[no-untyped-def]
        self._http = aiohttp.ClientSession()
        yield
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        await self._http.close()

    # ----- test helpers ------------------------------------------------------------------------
    @property
    def entries(self) -> list[ChatEntry]:
        return self.log.entries

    def fail_next_sends(self, errcode: int, count: int = 1) -> None:
        """Make the next `count` message/custom/send calls answer with this WeChat error code."""
        self._forced_errors.extend([errcode] * count)

    def bot_messages(self, openid: str | None = None) -> list[ChatEntry]:
        return self.log.bot_messages("wechat", openid)

    async def wait_for_bot_messages(self, openid: str, count: int, timeout: float = 10.0) -> list[ChatEntry]:
        return await self.log.wait_for_bot_messages("wechat", openid, count, timeout)

    def record(self, openid: str, direction: str, msgtype: str, body: dict[str, Any], status: str = "ok") -> ChatEntry:
        return self.log.record("wechat", openid, direction, msgtype, body, status)

    def start(self, coro: Any) -> None:
        """Run a delivery in the background (the sandbox page answers at once); cancelled at cleanup."""
        task = asyncio.ensure_future(coro)
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def menu_keys(self) -> dict[str, str]:
        """Key -> name of every installed menu button whose click reaches the bot."""
        buttons = [s for b in (self.menu or {}).get("button", []) for s in [b, *b.get("sub_button", [])]]
        return {b["key"]: b["name"] for b in buttons if b.get("type") in KEY_TYPES}

    # ----- what followers do -------------------------------------------------------------------
    def text_xml(self, openid: str, text: str, msg_id: str, create_time: int) -> str:
        return message_xml(self.original_id, openid, create_time, MsgType="text", Content=text,
                           MsgId=msg_id_field(msg_id))

    def event_xml(self, openid: str, event: str, key: str, create_time: int) -> str:
        # Events carry no MsgId: the bot de-duplicates retries on FromUserName + CreateTime.
        return message_xml(self.original_id, openid, create_time, MsgType="event", Event=event, EventKey=key)

    async def send_text(self, openid: str, text: str) -> Delivery:
        """A follower types `text`; returns once the bot answered (or WeChat gave up). An openid the
        account has never seen becomes a follower silently, so tests and the sandbox can make one up."""
        self._follow(openid)
        entry = self.record(openid, "user", "text", {"content": text}, status="delivering")
        msg_id = str(next(self._msg_ids))
        return self._settle(entry, await self.deliver(self.text_xml(openid, text, msg_id, int(time.time())), msg_id))

    async def click_menu(self, openid: str, key: str) -> Delivery:
        self._follow(openid)
        return await self._event(openid, "CLICK", key, "click", {"key": key, "name": self.menu_keys().get(key, key)})

    async def subscribe(self, openid: str, nickname: str | None = None) -> Delivery:
        self._follow(openid, nickname)
        return await self._event(openid, "subscribe", "", "event", {"event": "subscribe"})

    async def unsubscribe(self, openid: str) -> Delivery:
        self.followers.pop(openid, None)
        self.unfollowed.add(openid)
        return await self._event(openid, "unsubscribe", "", "event", {"event": "unsubscribe"})

    async def _event(self, openid: str, event: str, key: str, msgtype: str, body: dict[str, Any]) -> Delivery:
        entry = self.record(openid, "user", msgtype, body, status="delivering")
        now = int(time.time())
        # WeChat's advice for events: de-duplicate on FromUserName + CreateTime.
        return self._settle(entry, await self.deliver(self.event_xml(openid, event, key, now), f"{openid}:{now}"))

    def _follow(self, openid: str, nickname: str | None = None) -> None:
        self.unfollowed.discard(openid)
        self.followers[openid] = nickname or self.followers.get(openid) or openid

    def _settle(self, entry: ChatEntry, delivery: Delivery) -> Delivery:
        entry.status = "delivered" if delivery.acknowledged and delivery.error is None else "failed"
        if entry.status == "failed":
            # What WeChat shows the follower when the account's server fails them.
            entry.body["error"] = delivery.error or SERVICE_FAILURE
        self.log.changed.set()
        return delivery

    # ----- callbacks to the bot ----------------------------------------------------------------
    def encrypt_callback(self, plaintext: str, timestamp: int | None = None) -> tuple[str, bytes]:
        """The query string and body WeChat POSTs for one message, in the account's mode."""
        timestamp_text = str(timestamp or int(time.time()))
        nonce = str(secrets.randbelow(10**10))
        query = {"signature": signature(self.token, timestamp_text, nonce), "timestamp": timestamp_text,
                 "nonce": nonce, "openid": xml_field(plaintext, "FromUserName")}
        if self.mode == "plain":
            return urlencode(query), plaintext.encode()
        envelope = parse_xml(self.crypto.encrypt_message(plaintext, nonce, timestamp_text))
        encrypt = f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt>"
        if self.mode == "compatible":
            head, _, _ = plaintext.rpartition("</xml>")  # the last one: Content may hold "</xml>" too
            body = f"{head}{encrypt}</xml>"
        else:
            body = f"<xml><ToUserName><![CDATA[{self.original_id}]]></ToUserName>{encrypt}</xml>"
        query |= {"encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}
        return urlencode(query), body.encode()

    async def deliver(self, plaintext: str, msg_id: str) -> Delivery:
        """POST one callback like WeChat: wait up to the timeout for an answer, else retry the same
        message (same MsgId and CreateTime); then check any passive reply in the answer."""
        assert self._http is not None, "the simulator app is not running"
        openid, kind = xml_field(plaintext, "FromUserName"), interaction_kind(plaintext)
        if kind != "unsubscribe":
            # Before the POST: the bot may answer through custom/send while it handles the callback.
            now = time.time()  # one value: a grant is matched to last_interaction by its time
            self.last_interaction[openid] = now
            if kind in QUOTAS:
                self._grants[openid].append([kind, now, 0])
        delivery, answer = Delivery(msg_id), b""
        for attempt in range(1 + self.callback_retries):
            query, body = self.encrypt_callback(plaintext)
            try:
                async with self._http.post(f"{self.callback_url}?{query}", data=body,
                                           headers={"Content-Type": "text/xml"},
                                           timeout=aiohttp.ClientTimeout(total=self.callback_timeout)) as response:
                    answer = await response.read()
                    delivery.attempts.append(str(response.status))
                    if response.status == 200:
                        break
            except (asyncio.TimeoutError, aiohttp.ClientError) as err:
                delivery.attempts.append("timeout" if isinstance(err, asyncio.TimeoutError) else "error")
            if attempt < self.callback_retries:
                await asyncio.sleep(0.2)
        if delivery.acknowledged and kind != "unsubscribe":  # nobody is left to read a reply
            self._take_reply(delivery, openid, answer, max_articles=1 if kind == "message" else 8)
        return delivery

    def _take_reply(self, delivery: Delivery, openid: str, answer: bytes, max_articles: int) -> None:
        try:
            text = answer.decode("utf-8").strip()
            if text in ("", "success"):
                return  # acknowledged, nothing to show
            reply = parse_passive_reply(open_reply(parse_xml(text), self.crypto, self.mode), openid, self.original_id,
                                        self.live_media, max_articles)
        except (ValueError, UnicodeDecodeError) as err:
            delivery.error = f"bad passive reply: {err}"
            return
        delivery.reply = reply
        self.record(openid, "bot", reply["msgtype"], {**{k: v for k, v in reply.items() if k != "msgtype"},
                                                      "via": "passive"})

    async def verify_url(self) -> bool:
        """The server configuration check: GET with echostr, which the bot must echo (plain in every mode)."""
        assert self._http is not None, "the simulator app is not running"
        timestamp, nonce, echostr = str(int(time.time())), str(secrets.randbelow(10**10)), secrets.token_hex(10)
        query = urlencode({"signature": signature(self.token, timestamp, nonce), "timestamp": timestamp,
                           "nonce": nonce, "echostr": echostr})
        async with self._http.get(f"{self.callback_url}?{query}",
                                  timeout=aiohttp.ClientTimeout(total=self.callback_timeout)) as response:
            return response.status == 200 and (await response.text()) == echostr

    # ----- the Official Account API ------------------------------------------------------------
    async def api_token(self, request: web.Request) -> web.Response:
        self.api_calls["token"] += 1
        query = request.query
        if query.get("grant_type") != "client_credential":
            return _error(40002, "invalid grant_type")
        if not query.get("appid"):
            return _error(41002, "appid missing")
        if not query.get("secret"):
            return _error(41004, "appsecret missing")
        if query["appid"] != self.app_id:
            return _error(40013, "invalid appid")
        if not secrets.compare_digest(query["secret"].encode(), self.secret.encode()):
            return _error(40001, "invalid credential")
        now = time.time()
        for old, expires in self.tokens.items():
            self.tokens[old] = min(expires, now + TOKEN_OVERLAP_SECONDS)
        token = secrets.token_urlsafe(96)
        self.tokens[token] = now + TOKEN_SECONDS
        return web.json_response({"access_token": token, "expires_in": TOKEN_SECONDS})

    def _check_token(self, request: web.Request) -> web.Response | None:
        token = request.query.get("access_token", "")
        if not token:
            return _error(41001, "access_token missing")
        expires = self.tokens.get(token)
        if expires is None:
            return _error(40001, INVALID_TOKEN)
        if expires < time.time():
            return _error(42001, "access_token expired")
        return None

    async def api_custom_send(self, request: web.Request) -> web.Response:
        self.api_calls["custom/send"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        if self._forced_errors:
            code = self._forced_errors.popleft()
            return _error(code, FORCED_ERRMSG.get(code, "forced error"))
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(47001, "data format error")
        if not isinstance(body, dict):
            return _error(47001, "data format error")
        openid = body.get("touser")
        if openid in self.unfollowed:
            return _error(43004, "require subscribe")
        if not isinstance(openid, str) or openid not in self.followers:
            return _error(40003, "invalid openid")
        if (problem := check_custom_message(body, self.live_media)) is not None:
            return _error(*problem)
        if (problem := self._spend_quota(openid)) is not None:
            return _error(*problem)
        msgtype = body["msgtype"]
        self.record(openid, "bot", msgtype, {**body[msgtype], "via": "custom"})
        return _error(0, "ok")

    def _spend_quota(self, openid: str) -> tuple[int, str] | None:
        """The 48-hour window since the last interaction, then (reply_quota) the message count that
        each recent interaction allows; the grant that runs out first is used first."""
        now, last = time.time(), self.last_interaction.get(openid)
        if last is None or now - last > WINDOW_SECONDS:
            return 45015, FORCED_ERRMSG[45015]
        if not self.reply_quota:
            return None
        grants = self._grants[openid]
        if not any(at == last for _kind, at, _used in grants):
            grants.append(["message", last, 0])  # last_interaction set by hand (tests): a typed message
        live = [g for g in grants if now - g[1] <= QUOTAS[g[0]][1]]
        self._grants[openid] = live
        usable = [g for g in live if g[2] < QUOTAS[g[0]][0]]
        if not usable:
            return (45047, FORCED_ERRMSG[45047]) if live else (45015, FORCED_ERRMSG[45015])
        min(usable, key=lambda g: g[1] + QUOTAS[g[0]][1])[2] += 1
        return None

    async def api_media_upload(self, request: web.Request) -> web.Response:
        upload = await self.read_media_upload(request, ("image", "voice", "video", "thumb"))
        if isinstance(upload, web.Response):
            return upload
        kind, content, content_type, _filename = upload
        # Only images are checked closely: they are all the bot uploads.
        if kind == "image" and not (_is_jpg_or_png(content) or content.startswith((b"GIF87a", b"GIF89a"))):
            return _error(40005, "invalid file type")
        if len(content) > MAX_IMAGE_BYTES:
            return _error(40009, "invalid image size" if kind == "image" else "invalid media size")
        media_id = self.keep_media(content, content_type, id_bytes=48)
        return web.json_response({"type": kind, "media_id": media_id, "created_at": int(self.media[media_id][2])})

    async def api_menu_create(self, request: web.Request) -> web.Response:
        self.api_calls["menu/create"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(47001, "data format error")
        if (problem := check_menu(body)) is not None:
            return _error(*problem)
        self.menu = menu_as_stored(body)
        return _error(0, "ok")

    async def api_menu_get(self, request: web.Request) -> web.Response:
        self.api_calls["menu/get"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        if self.menu is None:
            return _error(46003, "menu no exist")
        return web.json_response({"menu": self.menu})

    async def api_menu_delete(self, request: web.Request) -> web.Response:
        self.api_calls["menu/delete"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        self.menu = None
        return _error(0, "ok")


__all__ = ["WeChatSimulator", "MODES"]
