"""Images and files members send to the bot, fetched from WeCom for handlers
(handlers/context.MediaDownloads): `keep title | tags` turns a marketer's upload into content. WeCom's
answers become outcomes a handler can speak about."""
from __future__ import annotations

import logging

from bot.channels.api_client import ApiUnavailable
from bot.channels.wecom_api import MediaTooLarge, WeComClient, WeComError
from handlers.context import Download

log = logging.getLogger(__name__)

EXPIRED_ERRCODE = 40007  # invalid media_id: never uploaded, or older than WeCom's 3 days


class WeComDownloads:
    def __init__(self, client: WeComClient) -> None:
        self.client = client

    async def fetch(self, media_id: str, max_bytes: int) -> Download:
        try:
            media = await self.client.get_media(media_id, max_bytes)
        except MediaTooLarge as err:
            return Download("too_large", size=err.size)
        except WeComError as err:
            if err.errcode == EXPIRED_ERRCODE:
                return Download("expired")
            log.warning("media/get refused: %s", err)
            return Download("unavailable")
        except ApiUnavailable as err:
            log.warning("media/get: %s", err)
            return Download("unavailable")
        return Download("ok", media.data, media.filename, len(media.data))
