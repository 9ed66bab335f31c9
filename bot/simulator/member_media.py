"""Media in the WeCom simulator, both ways. The app uploads (media/upload, with WeCom's types, sizes and
per-corp pacing) and fetches (media/get) media; members send pictures and files to the app: the bytes
become the app's media (media/get serves them for WeCom's 3 days, then 40007) and the callback carries
MsgType image or file, MediaId and, for a file, FileName, as WeCom's does."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.simulator.common import Delivery, TemporaryMedia, _error, _is_jpg_or_png, message_xml, msg_id_field

if TYPE_CHECKING:
    from bot.simulator.server import WeComSimulator


# media/upload sizes per type (bytes); every file is at least 5 bytes.
MEDIA_MAX_BYTES = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024,
                   "file": 20 * 1024 * 1024}
MEDIA_MIN_BYTES = 5


class MemberMedia(TemporaryMedia):
    """Mixed into WeComSimulator (the 3-day store, media/get and upload's common steps: TemporaryMedia)."""

    async def send_media(self: WeComSimulator, userid: str, kind: str, data: bytes, filename: str = "",
                         content_type: str = "application/octet-stream") -> Delivery:
        """A member sends a picture (`kind` "image") or a file in WeCom: kept as the app's media, which
        media/get serves for 3 days, then the callback (MsgType, MediaId and, for a file, FileName)."""
        if kind not in ("image", "file"):
            raise ValueError("kind is image or file")
        self.directory.setdefault(userid, userid)
        media_id = self.keep_media(data, content_type)
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

    def _upload_refused(self: WeComSimulator) -> web.Response | None:
        if not self.media_uploads.take(time.time()):
            self.api_calls["media/upload refused"] += 1
            return _error(45009, "api freq out of limit")
        return None

    async def api_media_upload(self: WeComSimulator, request: web.Request) -> web.Response:
        upload = await self.read_media_upload(request, ("image", "voice", "video", "file"))
        if isinstance(upload, web.Response):
            return upload
        kind, content, content_type, filename = upload
        if kind == "image" and (len(content) > MEDIA_MAX_BYTES["image"] or not _is_jpg_or_png(content)):
            return _error(40005, "invalid file type or size")
        if not MEDIA_MIN_BYTES <= len(content) <= MEDIA_MAX_BYTES[kind]:
            return _error(40006, "invalid file size")
        media_id = self.keep_media(content, content_type, name=filename)
        return web.json_response({"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
                                  "created_at": str(int(self.media[media_id][2]))})

    def _as_shown(self: WeComSimulator, msgtype: str, part: dict[str, Any]) -> dict[str, Any]:
        """What the member's WeCom shows: a file message names the file and its size."""
        if msgtype != "file":
            return part
        media_id = part["media_id"]
        return {**part, "name": self.media_names.get(media_id, "file"), "size": len(self.media[media_id][0])}
