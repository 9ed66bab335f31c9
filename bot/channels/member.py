"""The "member" channel: tasks, reminders and notices are addressed to a member (their userid) and go
out on the channel that member is reached on — WeCom, or a channel they are bound on (the WeChat
Official Account for partner staff outside the brand's WeCom). Deciding at send time means a
broadcast queued before someone bound their WeChat still reaches them there."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Container

from store.bindings import HOME, MEMBER_CHANNEL, push_addresses
from store.db import Database

# Who is reached elsewhere is read in one query for everyone, at most this often: a broadcast to
# thousands must not cost a query per message. A new binding takes effect within this time.
ADDRESSES_TTL_SECONDS = 10.0


class AddressesUnavailable(Exception):
    """The outbox retries the message later (the database did not answer)."""

    transient = True


class MemberAddresses:
    """Where a message addressed to a member goes: (channel, that channel's id for them)."""

    channel = MEMBER_CHANNEL

    def __init__(self, db: Database, open_channels: Container[str]) -> None:
        self.db = db
        self.open_channels = open_channels
        self._elsewhere: dict[str, tuple[str, str]] = {}
        self._expires = 0.0
        self._loaded = False
        self._lock = asyncio.Lock()

    async def address(self, userid: str) -> tuple[str, str]:
        if self._expires <= time.monotonic():
            async with self._lock:
                if self._expires <= time.monotonic():
                    await self._refresh()
        elsewhere = self._elsewhere.get(userid)
        return elsewhere if elsewhere is not None and elsewhere[0] in self.open_channels else (HOME, userid)

    async def _refresh(self) -> None:
        try:
            async with self.db.session() as session:
                self._elsewhere = await push_addresses(session)
        except Exception as err:
            if self._loaded:  # a database blip: the addresses of a moment ago will do
                self._expires = time.monotonic() + 1.0
                return
            raise AddressesUnavailable(f"cannot read where members are reached ({type(err).__name__})") from err
        self._loaded = True
        self._expires = time.monotonic() + ADDRESSES_TTL_SECONDS
