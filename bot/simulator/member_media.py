"""Members sending pictures and files to the app in the WeCom simulator: the bytes become the app's
media (media/get serves them for WeCom's 3 days, then 40007) and the callback carries MsgType image or
file, MediaId and, for a file, FileName, as WeCom's does."""
from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

from bot.simulator.common import Delivery, message_xml, msg_id_field

if TYPE_CHECKING:
    from bot.simulator.server import WeComSimulator


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
