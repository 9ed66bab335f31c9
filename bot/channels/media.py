"""Pictures for a channel: posters and charts are drawn by the instance that sends them, then uploaded
as the platform's temporary media. A poster's upload is reused (in Redis, so across instances) for a
bit less than the 3 days such media live."""
from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any

from bot.channels.api_client import TokenClient
from bot.render.posters import PosterRenderer, PosterRequest
from handlers.replies import PICTURES, Chart, Image, Picture, Reply, Stamped, reply_from_payload
from store.redis import SharedKeys

MEDIA_REUSE_SECONDS = int(2.5 * 86400)


class ImageUploads:
    def __init__(self, client: TokenClient, posters: PosterRenderer, shared: SharedKeys, namespace: str,
                 sources: Any = None) -> None:
        self.client = client
        self.sources = sources  # content_id -> the stored image's bytes (stamped copies)
        self.posters = posters
        self.shared = shared
        self.namespace = namespace  # media ids of one platform (or app) mean nothing to another

    async def media_id(self, reply: Picture, message_id: int) -> str:
        if isinstance(reply, Image):
            return await self._upload(Path(reply.path))
        if isinstance(reply, Chart):
            from bot.render.charts import render_report_async  # matplotlib loads on the first chart, not at start-up

            png = await render_report_async(reply.spec)  # CPU-bound: off the event loop
            return await self.client.upload_media("image", f"report-{message_id}.png", png, "image/png")
        if isinstance(reply, Stamped):
            path = await self._stamped(reply)
        else:
            request = PosterRequest(reply.template, reply.qr_url, reply.member_name, reply.partner_name,
                                    reply.task_title)
            path = await asyncio.to_thread(self.posters.render, request)  # CPU-bound; cached on disk
        key = f"media:{self.namespace}:poster:{path.stem}"  # the file name is its content key
        media_id = await self.shared.get(key)  # without Redis, this process remembers
        if media_id is None:
            media_id = await self._upload(path)
            await self.shared.set(key, media_id, MEDIA_REUSE_SECONDS)
        return media_id

    async def _stamped(self, reply: Stamped) -> Path:
        """The member's copy of a content image: from the cache, else stamped from the stored bytes."""
        path = self.posters.stamped_path(reply.sha256, reply.qr_url)
        if path.is_file():
            return path
        source = await self.sources(reply.content_id) if self.sources is not None else None
        if source is None:
            raise LookupError(f"content #{reply.content_id} has no stored image")
        return await asyncio.to_thread(self.posters.stamp, source, reply.sha256, reply.qr_url)

    async def _upload(self, path: Path) -> str:
        content_type = mimetypes.guess_type(path.name)[0] or "image/png"
        content = await asyncio.to_thread(path.read_bytes)
        return await self.client.upload_media("image", path.name, content, content_type)


class MediaSender:
    """What every channel's sender shares: its client, and pictures sent as the platform's uploaded
    media. A channel says how the rest of a reply looks there (`_body`)."""

    channel: str

    def __init__(self, client: Any, posters: PosterRenderer, shared: SharedKeys, sources: Any = None) -> None:
        self.client = client
        self.images = ImageUploads(client, posters, shared, namespace=self.channel, sources=sources)

    async def body_of(self, payload: dict[str, Any], message_id: int) -> dict[str, Any]:
        reply = reply_from_payload(payload)
        if isinstance(reply, PICTURES):
            return {"msgtype": "image", "image": {"media_id": await self.images.media_id(reply, message_id)}}
        return await self._body(reply, message_id)

    async def _body(self, reply: Reply, message_id: int) -> dict[str, Any]:
        raise NotImplementedError
