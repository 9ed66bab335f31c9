"""What the WeCom and WeChat simulators share: the conversation log the sandbox page shows, callback
delivery results, and small helpers for platform-style answers."""
from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web
from wechatpy.exceptions import InvalidSignatureException


@dataclass
class ChatEntry:
    id: int
    userid: str  # WeCom userid, or the follower's openid on WeChat
    direction: str  # "user" (typed into WeCom / WeChat) or "bot" (sent by the app)
    msgtype: str
    body: dict[str, Any]
    time: float
    status: str = "ok"  # user entries: delivering / delivered / failed
    channel: str = "wecom"  # or "wechat" (the Official Account)
    # The log's id when this entry last changed after it was recorded (a card whose buttons were
    # relabelled), so a page polling with `after=<last id>` sees the change: 0 = never.
    revision: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "userid": self.userid, "direction": self.direction, "msgtype": self.msgtype,
                "body": self.body, "time": self.time, "status": self.status, "channel": self.channel,
                "revision": self.revision}


@dataclass
class Delivery:
    """What happened to one callback: the HTTP status of each attempt ("timeout" when none).

    WeChat callbacks may carry a passive reply in the HTTP answer: `reply` is that reply parsed, and
    `error` says why an answer WeChat would not accept was refused (the user sees a service failure)."""

    msg_id: str
    attempts: list[str] = field(default_factory=list)
    reply: dict[str, Any] | None = None
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return bool(self.attempts) and self.attempts[-1] == "200"


class ChatLog:
    """The conversation of every channel in one list with one id sequence, so the sandbox page can
    poll with `after=<last id>` whichever channel it shows."""

    def __init__(self) -> None:
        self.entries: list[ChatEntry] = []
        self._ids = itertools.count(1)
        self.changed = asyncio.Event()

    def record(self, channel: str, userid: str, direction: str, msgtype: str, body: dict[str, Any],
               status: str = "ok") -> ChatEntry:
        entry = ChatEntry(next(self._ids), userid, direction, msgtype, body, time.time(), status, channel)
        self.entries.append(entry)
        self.changed.set()
        return entry

    def revised(self, entry: ChatEntry) -> None:
        entry.revision = next(self._ids)
        self.changed.set()

    def bot_messages(self, channel: str, userid: str | None = None) -> list[ChatEntry]:
        return [e for e in self.entries
                if e.channel == channel and e.direction == "bot" and (userid is None or e.userid == userid)]

    async def wait_for_bot_messages(self, channel: str, userid: str, count: int,
                                    timeout: float = 10.0) -> list[ChatEntry]:
        deadline = time.monotonic() + timeout
        while len(self.bot_messages(channel, userid)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{userid} got {len(self.bot_messages(channel, userid))} of {count} messages")
            self.changed.clear()
            try:
                # Capped: several waiters share the event, and one may clear it just after it was set.
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass
        return self.bot_messages(channel, userid)


def _cdata(text: str) -> str:
    return text.replace("]]>", "]]]]><![CDATA[>")


def _error(errcode: int, errmsg: str) -> web.Response:
    """Both platforms answer API errors with HTTP 200 and a JSON errcode."""
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


def _is_jpg_or_png(content: bytes) -> bool:
    return content.startswith(b"\x89PNG\r\n\x1a\n") or content.startswith(b"\xff\xd8\xff")


async def read_upload(request: web.Request) -> tuple[bytes, str, str] | web.Response:
    """media/upload's multipart field `media` (content, content type, file name), or both platforms' 41005."""
    try:
        form = await request.post()
    except ValueError:
        return _error(41005, "media data missing")
    media = form.get("media")
    if not isinstance(media, web.FileField):
        return _error(41005, "media data missing")
    # aiohttp's client (the bot's) percent-encodes a file name that is not ASCII.
    return media.file.read(), media.content_type or "application/octet-stream", unquote(media.filename or "") or "file"


# Both platforms keep temporary media (media/upload, what a member sends) for 3 days, then 40007.
MEDIA_LIFETIME_SECONDS = 3 * 86400


class TemporaryMedia:
    """Temporary media as WeCom and WeChat keep it, mixed into both simulators: media/upload's common
    steps, media/get, and the 3-day lifetime. Each simulator sets `media`, `media_names`, `api_calls`."""

    media: dict[str, tuple[bytes, str, float]]  # media id -> (content, content type, when uploaded)
    media_names: dict[str, str]  # media id -> the uploaded file's name (media/get answers with it)
    api_calls: defaultdict[str, int]

    def _check_token(self, request: web.Request) -> web.Response | None:
        raise NotImplementedError

    def keep_media(self, content: bytes, content_type: str, *, id_bytes: int = 32, name: str | None = None) -> str:
        """Store media as uploaded now; its new media id."""
        media_id = secrets.token_urlsafe(id_bytes)
        self.media[media_id] = (content, content_type, time.time())
        if name is not None:
            self.media_names[media_id] = name
        return media_id

    def live_media(self, media_id: Any) -> bool:
        """Uploaded, and younger than the platform's 3 days."""
        item = self.media.get(media_id) if isinstance(media_id, str) else None
        return item is not None and item[2] >= time.time() - MEDIA_LIFETIME_SECONDS

    def age_media(self, media_id: str, seconds: float) -> None:
        """Make media look `seconds` older (past 3 days, media/get answers 40007)."""
        content, content_type, at = self.media[media_id]
        self.media[media_id] = (content, content_type, at - seconds)

    def _upload_refused(self) -> web.Response | None:
        """The platform's media/upload pacing, once the token is good: None lets the upload through."""
        return None

    async def read_media_upload(self, request: web.Request,
                                kinds: tuple[str, ...]) -> tuple[str, bytes, str, str] | web.Response:
        """media/upload up to its content checks: the call counted, the token, the pacing, the type,
        the multipart field; (type, content, content type, file name), or the platform's answer."""
        self.api_calls["media/upload"] += 1
        if (problem := self._check_token(request) or self._upload_refused()) is not None:
            return problem
        kind = request.query.get("type", "")
        if kind not in kinds:
            return _error(40004, "invalid media type")
        upload = await read_upload(request)
        return upload if isinstance(upload, web.Response) else (kind, *upload)

    async def api_media_get(self, request: web.Request) -> web.Response:
        self.api_calls["media/get"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        return self.media_response(request.query.get("media_id", ""))

    def media_response(self, media_id: str) -> web.Response:
        if not self.live_media(media_id):
            return _error(40007, "invalid media_id")
        content, content_type, _ = self.media[media_id]
        headers = {}
        if media_id in self.media_names:
            # media/get answers with the uploaded file's name, as the platforms do.
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(self.media_names[media_id])}"
        return web.Response(body=content, content_type=content_type, headers=headers)


def message_xml(to: str, sender: str, create_time: int, **fields: str | int) -> str:
    """A callback message as WeCom and WeChat write it: text in CDATA, numbers (MsgId, AgentID) bare."""
    parts = [f"<ToUserName><![CDATA[{_cdata(to)}]]></ToUserName>",
             f"<FromUserName><![CDATA[{_cdata(sender)}]]></FromUserName>", f"<CreateTime>{create_time}</CreateTime>"]
    parts += [f"<{name}>{value}</{name}>" if isinstance(value, int) else f"<{name}><![CDATA[{_cdata(value)}]]></{name}>"
              for name, value in fields.items()]
    return f"<xml>{''.join(parts)}</xml>"


class MsgIds:
    """MsgIds that never repeat, also across restarts of the simulator: each is the larger of the
    last one plus one and `base` plus the microseconds since the epoch. The bot keeps the MsgIds it
    has seen (a retry is de-duplicated on them), so a counter that started again at `base` after a
    restart would repeat ids already in its inbox, and those messages would get no reply. Unique as
    long as fewer than a million messages a second are sent, which no simulator run comes near."""

    def __init__(self, base: int) -> None:
        self.base = base
        self._last = 0

    def __iter__(self) -> "MsgIds":
        return self

    def __next__(self) -> int:
        self._last = max(self._last + 1, self.base + time.time_ns() // 1000)
        return self._last


def msg_id_field(msg_id: str) -> str | int:
    return int(msg_id) if msg_id.isascii() and msg_id.isdigit() else msg_id


def decrypt_reply(crypto: Any, envelope: dict[str, Any], wrong_receiver: type[Exception], wrong_receiver_text: str) -> str:
    """The plaintext of an encrypted reply after its MsgSignature is checked, as WeCom and WeChat
    both check it (wechatpy's crypto for either); ValueError names what the platform would refuse.
    `wrong_receiver` is the crypto's error for a reply encrypted for another corp or AppID."""
    try:
        return crypto.decrypt_message(envelope, str(envelope.get("MsgSignature")), str(envelope.get("TimeStamp")),
                                      str(envelope.get("Nonce")))
    except InvalidSignatureException:
        raise ValueError("MsgSignature does not match") from None
    except wrong_receiver:
        raise ValueError(wrong_receiver_text) from None
    except Exception as err:  # bad base64, padding or key: the platform cannot read it either
        raise ValueError(f"cannot decrypt ({type(err).__name__})") from None
