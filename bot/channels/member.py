"""The "member" channel: tasks, reminders and notices are addressed to a member (their userid) and go
out on the channel that member is reached on — WeCom, or the WeChat Official Account for partner
staff outside the brand's WeCom. Deciding at send time means a broadcast queued before someone bound
their WeChat still reaches them there."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.pipeline.outbox import ChannelSender
from store.bindings import MEMBER_CHANNEL, WECHAT, WECOM, wechat_push_addresses
from store.db import Database

# Who is reached on WeChat is read in one query for everyone, at most this often: a broadcast to
# thousands must not cost a query per message. A new binding takes effect within this time.
ADDRESSES_TTL_SECONDS = 10.0


class AddressesUnavailable(Exception):
    """The outbox retries the message later (the database did not answer)."""

    transient = True


class MemberSender:
    channel = MEMBER_CHANNEL

    def __init__(self, db: Database, senders: dict[str, ChannelSender]) -> None:
        self.db = db
        self.senders = senders
        self._wechat: dict[str, str] = {}
        self._expires = 0.0
        self._loaded = False
        self._lock = asyncio.Lock()

    async def address(self, userid: str) -> tuple[str, str]:
        if self._expires <= time.monotonic():
            async with self._lock:
                if self._expires <= time.monotonic():
                    await self._refresh()
        openid = self._wechat.get(userid)
        return (WECHAT, openid) if openid and WECHAT in self.senders else (WECOM, userid)

    async def _refresh(self) -> None:
        try:
            async with self.db.session() as session:
                self._wechat = await wechat_push_addresses(session)
        except Exception as err:
            if self._loaded:  # a database blip: the addresses of a moment ago will do
                self._expires = time.monotonic() + 1.0
                return
            raise AddressesUnavailable(f"cannot read who is reached on WeChat ({type(err).__name__})") from err
        self._loaded = True
        self._expires = time.monotonic() + ADDRESSES_TTL_SECONDS

    async def send(self, recipient: str, payload: dict[str, Any], *, message_id: int, duplicate_check: bool,
                   duplicate_window: int) -> None:
        channel, address = await self.address(recipient)
        await self.senders[channel].send(address, payload, message_id=message_id, duplicate_check=duplicate_check,
                                         duplicate_window=duplicate_window)
