"""Sends outbox rows through their channel: claim, send, mark; transient errors back off and retry."""
from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from typing import Any, Protocol

from bot.config import OutboxConfig
from store import outbox as outbox_store
from store.db import Database
from store.models import utcnow

log = logging.getLogger(__name__)


class ChannelSender(Protocol):
    async def send(self, recipient: str, payload: dict[str, Any], *, resend: bool,
                   duplicate_window: int) -> None: ...


def is_transient(err: BaseException) -> bool:
    return bool(getattr(err, "transient", False))


class OutboxSender:
    def __init__(self, db: Database, senders: dict[str, ChannelSender], config: OutboxConfig) -> None:
        self.db = db
        self.senders = senders
        self.config = config
        self.lease = timedelta(seconds=config.lease_seconds)
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._concurrency = asyncio.Semaphore(16)

    def submit(self, outbox_ids: list[int]) -> None:
        for outbox_id in outbox_ids:
            self._spawn(outbox_id, None)

    def submit_claimed(self, claims: list[outbox_store.Claim]) -> None:
        """Send rows this instance queued already claimed (see store.outbox.add)."""
        for claim in claims:
            self._spawn(claim.id, claim)

    def _spawn(self, outbox_id: int, claim: outbox_store.Claim | None) -> None:
        if outbox_id in self._in_flight:
            return
        self._in_flight.add(outbox_id)
        task = asyncio.create_task(self._send_guarded(outbox_id, claim))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sweep(self) -> None:
        """Pick up rows that are due: retries, and rows left by a crashed or busy instance."""
        async with self.db.session() as session:
            ids = await outbox_store.claimable_ids(session, self.lease)
        self.submit(ids)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send_guarded(self, outbox_id: int, claim: outbox_store.Claim | None = None) -> None:
        try:
            async with self._concurrency:
                if claim is None:
                    await self.send_one(outbox_id)
                else:
                    await self.deliver(claim)
        except Exception:
            # Database trouble while claiming or marking: the row stays claimable for the sweeper.
            log.exception("outbox row %d: could not be processed now", outbox_id)
        finally:
            self._in_flight.discard(outbox_id)

    async def send_one(self, outbox_id: int) -> None:
        async with self.db.session() as session:
            claim = await outbox_store.claim(session, outbox_id, self.lease)
        if claim is not None:
            await self.deliver(claim)

    async def deliver(self, claim: outbox_store.Claim) -> None:
        outbox_id = claim.id
        sender = self.senders.get(claim.channel)
        try:
            if sender is None:
                raise LookupError(f"no sender for channel {claim.channel!r}")
            await sender.send(claim.recipient, claim.payload, resend=claim.attempts > 1,
                              duplicate_window=self.config.duplicate_check_interval_seconds)
        except Exception as err:
            retry = is_transient(err) and claim.attempts < self.config.max_attempts
            retry_at = utcnow() + timedelta(seconds=self._backoff(claim.attempts)) if retry else None
            if not is_transient(err) and not hasattr(err, "errcode"):
                log.exception("outbox row %d failed", outbox_id)
            else:
                log.warning("outbox row %d: %s (%s)", outbox_id, err, "will retry" if retry else "giving up")
            async with self.db.session() as session:
                await outbox_store.mark_failed(session, claim, str(err), retry_at)
            return
        async with self.db.session() as session:
            await outbox_store.mark_sent(session, claim)

    def _backoff(self, attempts: int) -> float:
        delay = min(self.config.backoff_base_seconds * 2 ** (attempts - 1), self.config.backoff_max_seconds)
        return delay * random.uniform(0.8, 1.2)
