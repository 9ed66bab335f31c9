"""What a chat channel is to the bot: its callback routes, its sender, its own limits.

A channel (WeCom, the WeChat Official Account, ...) turns its platform's callbacks into `Incoming`
messages for the inbox and sends outbox payloads back. Everything else — who a user is (store/bindings:
a channel's user id bound to a member), routing, handlers, the outbox — is the same for every channel.
A new channel is a module here plus one line in `CHANNELS` (bot/channels/__init__.py).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web

from bot.config import Config
from bot.render.posters import PosterRenderer
from store.db import Database
from store.redis import SharedKeys

if TYPE_CHECKING:
    from bot.pipeline.inbox import InboxProcessor
    from bot.pipeline.outbox import OutboxSender


class ChannelSender(Protocol):
    images: Any  # bot/channels/media.ImageUploads: pictures as the platform's uploaded media (passive ones too)

    async def send(self, recipient: str, payload: dict[str, Any], *, message_id: int, duplicate_check: bool,
                   duplicate_window: int) -> None: ...


@dataclass(frozen=True)
class SendLimits:
    """How many messages one recipient may get; over it the platform drops them silently, so the
    outbox holds them back instead."""

    per_minute: int
    per_hour: int


@dataclass(frozen=True)
class Pipeline:
    """What a channel's routes reach while answering a request. Routes are added before the app
    starts and the resources start with it, so each is looked up when needed."""

    db: Callable[[], Database]
    inbox: Callable[[], InboxProcessor]
    outbox: Callable[[], OutboxSender]


@dataclass(frozen=True)
class SendingKit:
    """What a channel's sender may use: one HTTP session, the shared keys (access tokens, media ids)
    and the poster renderer (image replies); `sources(content_id)` gives a content image's stored bytes
    (for stamped copies; None when the item has none)."""

    http: aiohttp.ClientSession
    shared: SharedKeys
    posters: PosterRenderer
    sources: Callable[[int], Awaitable[bytes | None]] | None = None


class Channel(Protocol):
    name: str  # stored with inbox and outbox rows and member identities: never rename one

    def enabled(self, config: Config) -> bool: ...

    def send_limits(self, config: Config) -> SendLimits | None: ...

    def routes(self, config: Config, pipeline: Pipeline) -> list[web.RouteDef]: ...

    def sender(self, config: Config, kit: SendingKit) -> ChannelSender: ...
