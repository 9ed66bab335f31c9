"""The "member" channel: tasks, reminders and notices are addressed to a member (their userid) and go
out on the channel that member is reached on — WeCom, or the WeChat Official Account for partner
staff outside the brand's WeCom (store.bindings.push_address). Deciding at send time means a
broadcast queued before someone bound their WeChat still reaches them there."""
from __future__ import annotations

import time
from typing import Any

from bot.outbox import ChannelSender
from store.bindings import MEMBER_CHANNEL, WECOM, push_address
from store.db import Database

# Bindings change rarely; a send may use one this many seconds old.
ADDRESS_TTL_SECONDS = 30.0


class MemberSender:
    channel = MEMBER_CHANNEL

    def __init__(self, db: Database, senders: dict[str, ChannelSender]) -> None:
        self.db = db
        self.senders = senders
        self._addresses: dict[str, tuple[str, str, float]] = {}

    async def address(self, userid: str) -> tuple[str, str]:
        channel, address, expires = self._addresses.get(userid, ("", "", 0.0))
        if expires > time.monotonic():
            return channel, address
        async with self.db.session() as session:
            channel, address = await push_address(session, userid)
        if len(self._addresses) > 50_000:
            self._addresses.clear()
        self._addresses[userid] = (channel, address, time.monotonic() + ADDRESS_TTL_SECONDS)
        return channel, address

    async def send(self, recipient: str, payload: dict[str, Any], *, message_id: int, duplicate_check: bool,
                   duplicate_window: int) -> None:
        channel, address = await self.address(recipient)
        sender = self.senders.get(channel) or self.senders[WECOM]
        await sender.send(address, payload, message_id=message_id, duplicate_check=duplicate_check,
                          duplicate_window=duplicate_window)
