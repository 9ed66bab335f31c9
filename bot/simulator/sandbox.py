"""The sandbox chat page and its small JSON API (DESIGN §9).

A person chats with the bot as any WeCom member, or, when an Official Account is simulated too, as
any of its followers. Every message goes through the simulators' real callback path, so the page
sees exactly what a member or follower would.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.config import ASSETS
from bot.simulator import webfont

if TYPE_CHECKING:
    from bot.simulator.server import WeComSimulator
    from bot.simulator.wechat import WeChatSimulator

SANDBOX_PAGE = ASSETS / "pages" / "sandbox.html"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'")
# The fonts change only with the code: a day in the browser's cache, then asked again.
FONT_HEADERS = {"Cache-Control": "public, max-age=86400"}
USERID_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# WeChat openids are 28 characters of base64url ("o" + 27), e.g. oR5Gjjl_eiZoUpGozMo7dbBJ362A.
OPENID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{28}$")
ID_PROBLEM = {"wecom": "userid must be 1-64 letters, digits or _-.@",
              "wechat": "openid must be 28 letters, digits, _ or -"}
MAX_TEXT = 2048
# A picture or file sent from the page travels as base64 in JSON, inside the app's 21 MB body limit.
MAX_MEDIA_BYTES = 15 * 1024 * 1024


class Sandbox:
    def __init__(self, wecom: WeComSimulator, wechat: WeChatSimulator | None = None) -> None:
        self.wecom = wecom
        self.wechat = wechat
        self._font: asyncio.Future[bytes] | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.page),
            web.get("/sandbox/api/members", self.members),
            web.get("/sandbox/api/messages", self.messages),
            web.get("/sandbox/api/menu", self.menu),
            web.post("/sandbox/api/send", self.send),
            web.post("/sandbox/api/send-media", self.send_media),
            web.post("/sandbox/api/click", self.click),
            web.post("/sandbox/api/follow", self.follow),
            web.get("/sandbox/media/{media_id}", self.media),
            web.get("/sandbox/fonts/page.woff", self.page_font),
            web.get("/sandbox/fonts/full.otf", self.full_font),
        ]

    @property
    def channels(self) -> list[str]:
        return ["wecom", "wechat"] if self.wechat is not None else ["wecom"]

    async def page(self, _request: web.Request) -> web.Response:
        # The page's web font takes seconds to build the first time: begin now, not when CSS asks.
        self._font = self._font or asyncio.ensure_future(asyncio.to_thread(webfont.page_font))
        return web.Response(text=SANDBOX_PAGE.read_text(encoding="utf-8"), content_type="text/html",
                            headers={"Content-Security-Policy": CSP})

    async def page_font(self, _request: web.Request) -> web.Response:
        return web.Response(body=await asyncio.to_thread(webfont.page_font), content_type="font/woff",
                            headers=FONT_HEADERS)

    async def full_font(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(webfont.SOURCE_FONT, headers={**FONT_HEADERS, "Content-Type": "font/otf"})

    async def members(self, _request: web.Request) -> web.Response:
        people: list[dict[str, str]] = [{"userid": u, "name": n, "channel": "wecom"}
                                        for u, n in self.wecom.directory.items()]
        if self.wechat is not None:
            people += [{"userid": o, "name": n, "channel": "wechat"} for o, n in self.wechat.followers.items()]
        return web.json_response({"members": people, "channels": self.channels})

    async def messages(self, request: web.Request) -> web.Response:
        channel = request.query.get("channel", "wecom")
        if channel not in self.channels:
            return _problem(f"channel must be one of {', '.join(self.channels)}")
        userid = request.query.get("userid", "")
        after = int(request.query["after"]) if request.query.get("after", "").isdecimal() else 0
        entries = [e.as_json() for e in self.wecom.log.entries
                   if e.channel == channel and e.userid == userid and (e.id > after or e.revision > after)]
        return web.json_response({"messages": entries})

    async def menu(self, _request: web.Request) -> web.Response:
        installed = self.wechat.menu if self.wechat is not None else None
        return web.json_response(installed or {"button": []})

    async def send(self, request: web.Request) -> web.Response:
        body = await self._body(request, "userid", "text")
        if isinstance(body, web.Response):
            return body
        if not body["text"].strip() or len(body["text"]) > MAX_TEXT:
            return _problem(f"text must be 1-{MAX_TEXT} characters")
        if body["channel"] == "wechat":
            assert self.wechat is not None
            self.wechat.start(self.wechat.send_text(body["userid"], body["text"]))
        else:
            self.wecom.start(self.wecom.send_text(body["userid"], body["text"]))
        return web.json_response({"ok": True})

    async def send_media(self, request: web.Request) -> web.Response:
        """A WeCom member sends a picture (kind "image") or a file: {userid, kind, filename, data (base64)}."""
        body = await self._body(request, "userid", "kind", "filename", "data")
        if isinstance(body, web.Response):
            return body
        if body["channel"] != "wecom" or body["kind"] not in ("image", "file"):
            return _problem("WeCom members send kind image or file")
        try:
            data = base64.b64decode(body["data"], validate=True)
        except (binascii.Error, ValueError):
            return _problem("data must be base64")
        if not data or len(data) > MAX_MEDIA_BYTES:
            return _problem(f"the file must be 1 byte to {MAX_MEDIA_BYTES // 1024 // 1024} MB here")
        content_type = "image/png" if data.startswith(b"\x89PNG") else \
            "image/jpeg" if data.startswith(b"\xff\xd8") else "application/octet-stream"
        self.wecom.start(self.wecom.send_media(body["userid"], body["kind"], data, body["filename"][:200],
                                               content_type))
        return web.json_response({"ok": True})

    async def click(self, request: web.Request) -> web.Response:
        """A WeCom card button (key and the card's task_id), or a WeChat menu button (key)."""
        body = await self._body(request, "userid", "key")
        if isinstance(body, web.Response):
            return body
        if body["channel"] == "wechat":
            assert self.wechat is not None
            # WeChat only ever sends the keys of the installed menu's click buttons.
            if body["key"] not in self.wechat.menu_keys():
                return _problem("no click button with this key in the installed menu")
            self.wechat.start(self.wechat.click_menu(body["userid"], body["key"]))
        else:
            if not isinstance(body.get("task_id"), str):
                return _problem("need userid, key, task_id")
            self.wecom.start(self.wecom.click(body["userid"], body["key"], body["task_id"]))
        return web.json_response({"ok": True})

    async def follow(self, request: web.Request) -> web.Response:
        """A new person follows the Official Account (a subscribe event reaches the bot)."""
        body = await self._body(request, "userid")
        if isinstance(body, web.Response):
            return body
        if body["channel"] != "wechat" or self.wechat is None:
            return _problem("only WeChat followers can follow")
        if body["userid"] in self.wechat.followers:
            return web.json_response({"ok": True, "already": True})
        self.wechat.start(self.wechat.subscribe(body["userid"]))
        return web.json_response({"ok": True})

    async def media(self, request: web.Request) -> web.Response:
        media_id = request.match_info["media_id"]
        if self.wechat is not None and media_id in self.wechat.media:
            return self.wechat.media_response(media_id)
        return self.wecom.media_response(media_id)

    async def _body(self, request: web.Request, *fields: str) -> dict[str, Any] | web.Response:
        # JSON only: a cross-site form or text/plain POST cannot chat as someone else.
        if request.content_type != "application/json":
            return web.json_response({"error": "send JSON (Content-Type: application/json)"}, status=415)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _problem("send JSON")
        if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in fields):
            return _problem(f"need {', '.join(fields)}")
        body.setdefault("channel", "wecom")
        if body["channel"] not in self.channels:
            return _problem(f"channel must be one of {', '.join(self.channels)}")
        pattern = OPENID_PATTERN if body["channel"] == "wechat" else USERID_PATTERN
        if not pattern.fullmatch(body["userid"]):
            return _problem(ID_PROBLEM[body["channel"]])
        return body


def _problem(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)
