"""Media in the WeCom simulator, both ways. The app uploads (media/upload, with WeCom's types, sizes and
per-corp pacing) and fetches (media/get) media; members send pictures and files to the app: the bytes
become the app's media (media/get serves them for WeCom's 3 days, then 40007) and the callback carries
MsgType image or file, MediaId and, for a file, FileName, as WeCom's does."""
from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from bot.simulator.common import Delivery, _error, _is_jpg_or_png, message_xml, msg_id_field, read_upload

if TYPE_CHECKING:
    from bot.simulator.server import WeComSimulator


# media/upload sizes per type (bytes); every file is at least 5 bytes.
MEDIA_MAX_BYTES = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024,
                   "file": 20 * 1024 * 1024}
MEDIA_MIN_BYTES = 5
MEDIA_LIFETIME_SECONDS = 3 * 86400


class MemberMedia:
    """Mixed into WeComSimulator."""

    async def send_media(self: WeComSimulator, userid: str, kind: str, data: bytes, filename: str = "",
                         content_type: str = "application/octet-stream") -> Delivery:
        """A member sends a picture (`kind` "image") or a file in WeCom: kept as the app's media, which
        media/get serves for 3 days, then the callback (MsgType, MediaId and, for a file, FileName)."""
        if kind not in ("image", "file"):
            raise ValueError("kind is image or file")
        self.directory.setdefault(userid, userid)
        media_id = secrets.token_urlsafe(32)
        self.media[media_id] = (data, content_type, time.time())
        self.media_names[media_id] = filename or f"{media_id[:16]}.jpg"
        entry = self.record(userid, "user", kind, {"media_id": media_id, "name": self.media_names[media_id],
                                                   "size": len(data)}, status="delivering")
        msg_id = str(next(self._msg_ids))
        extra: dict[str, str] = {"PicUrl": f"https://wework.qpic.cn/sim/{media_id}"} if kind == "image" \
            else {"FileName": filename or "file"}
        xml = message_xml(self.corp_id, userid, int(time.time()), MsgType=kind, MediaId=media_id, **extra,
                          MsgId=msg_id_field(msg_id), AgentID=self.agent_id)
        delivery = await self.deliver(xml, msg_id)
        entry.status = "delivered" if delivery.acknowledged else "failed"
        self.log.changed.set()
        return delivery

    def age_media(self: WeComSimulator, media_id: str, seconds: float) -> None:
        """Make media look `seconds` older (past 3 days, media/get answers 40007)."""
        content, content_type, at = self.media[media_id]
        self.media[media_id] = (content, content_type, at - seconds)

    async def api_media_upload(self: WeComSimulator, request: web.Request) -> web.Response:
        self.api_calls["media/upload"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        if not self.media_uploads.take(time.time()):
            self.api_calls["media/upload refused"] += 1
            return _error(45009, "api freq out of limit")
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "file"):
            return _error(40004, "invalid media type")
        upload = await read_upload(request)
        if isinstance(upload, web.Response):
            return upload
        content, content_type, filename = upload
        if kind == "image" and (len(content) > MEDIA_MAX_BYTES["image"] or not _is_jpg_or_png(content)):
            return _error(40005, "invalid file type or size")
        if not MEDIA_MIN_BYTES <= len(content) <= MEDIA_MAX_BYTES[kind]:
            return _error(40006, "invalid file size")
        media_id = secrets.token_urlsafe(32)
        self.media[media_id] = (content, content_type, time.time())
        self.media_names[media_id] = filename
        return web.json_response({"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
                                  "created_at": str(int(time.time()))})

    async def api_media_get(self: WeComSimulator, request: web.Request) -> web.Response:
        self.api_calls["media/get"] += 1
        if (problem := self._check_token(request)) is not None:
            return problem
        return self.media_response(request.query.get("media_id", ""))

    def live_media(self: WeComSimulator, media_id: Any) -> bool:
        """Uploaded, and younger than WeCom's 3 days."""
        item = self.media.get(media_id) if isinstance(media_id, str) else None
        return item is not None and item[2] >= time.time() - MEDIA_LIFETIME_SECONDS

    def _as_shown(self: WeComSimulator, msgtype: str, part: dict[str, Any]) -> dict[str, Any]:
        """What the member's WeCom shows: a file message names the file and its size."""
        if msgtype != "file":
            return part
        media_id = part["media_id"]
        return {**part, "name": self.media_names.get(media_id, "file"), "size": len(self.media[media_id][0])}

    def media_response(self: WeComSimulator, media_id: str) -> web.Response:
        if not self.live_media(media_id):
            return _error(40007, "invalid media_id")
        content, content_type, _ = self.media[media_id]
        headers = {}
        if media_id in self.media_names:
            # media/get answers with the uploaded file's name, as WeCom does.
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(self.media_names[media_id])}"
        return web.Response(body=content, content_type=content_type, headers=headers)
