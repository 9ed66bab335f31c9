"""Sends outbox rows through their channel: claim, respect the per-member limit, send, mark.

Broadcast rows are claimed in batches no larger than the free sending capacity (so nothing sits
claimed long enough for its lease to run out); replies to chat arrive already claimed and go out at
once. Transient errors back off and retry; other errors are recorded on the row.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import timedelta

from bot.channels.base import ChannelSender
from bot.channels.member import MemberAddresses
from bot.config import OutboxConfig
from bot.metrics import OUTBOX
from bot.pipeline.ratelimit import MemberRateLimiter
from store import outbox as outbox_store
from store.bindings import MEMBER_CHANNEL
from store.db import Database
from store.models import utcnow

log = logging.getLogger(__name__)


def is_transient(err: BaseException) -> bool:
    return bool(getattr(err, "transient", False))


class OutboxSender:
    def __init__(self, db: Database, senders: dict[str, ChannelSender], config: OutboxConfig,
                 limiters: dict[str, MemberRateLimiter], addresses: MemberAddresses | None = None) -> None:
        """`limiters`: the send limits of each channel that has them; `addresses`: where rows
        addressed to a member (channel "member") go."""
        self.db = db
        self.senders = senders
        self.config = config
        self.limiters = limiters
        self.addresses = addresses
        self.lease = timedelta(seconds=config.lease_seconds)
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # WeCom said the app is over a frequency limit (45009) or too concurrent (45033): nobody
        # on this instance sends until then; WeCom blocks a minute limit for 60 s (DESIGN §10).
        self._paused_until = 0.0
        # Sent rows are marked in batches by the run loop: one statement instead of one per row.
        self._sent: list[outbox_store.Claim] = []

    def kick(self) -> None:
        """New rows are queued: look now rather than at the next interval."""
        self._wake.set()

    def submit_claimed(self, claims: list[outbox_store.Claim]) -> None:
        """Send rows this instance queued already claimed (see store.outbox.add), one after the
        other: the replies to one message arrive in the order the handler gave them."""
        claims = [c for c in claims if c.id not in self._in_flight]
        if not claims:
            return
        self._in_flight.update(c.id for c in claims)
        task = asyncio.create_task(self._deliver_in_order(claims))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_in_order(self, claims: list[outbox_store.Claim]) -> None:
        started = time.monotonic()
        for claim in claims:
            if time.monotonic() - started > self.lease.total_seconds() / 3:
                # It waited behind a slow one (a poster upload): keep it ours, or leave it to the taker.
                try:
                    async with self.db.session() as session:
                        still_ours = await outbox_store.renew(session, claim)
                except Exception:
                    still_ours = False
                if not still_ours:
                    self._in_flight.discard(claim.id)
                    continue
            await self._deliver_guarded(claim)

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Claim due rows while there is capacity; sleep until kicked, a send ends, or the interval.
        Ends (between claims, never half-way through one) when `stop` is set."""
        stop_task = asyncio.ensure_future(stop.wait())
        stop_task.add_done_callback(lambda _: self._wake.set())
        while not stop.is_set():
            await self._mark_sent()
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            capacity = self.config.concurrency - len(self._in_flight)
            claims: list[outbox_store.Claim] = []
            if capacity > 0:
                try:
                    async with self.db.session() as session:
                        claims = await outbox_store.claim_due(session, self.lease, capacity, self._in_flight)
                except Exception as err:
                    log.warning("outbox: cannot claim rows now (%s)", type(err).__name__)
            for claim in claims:
                self._spawn(claim)
            if claims and len(claims) == capacity:
                continue_soon = self._wake.wait()  # woken when a send finishes
            else:
                continue_soon = asyncio.wait_for(self._wake.wait(), interval)
            with contextlib.suppress(asyncio.TimeoutError):
                await continue_soon
            self._wake.clear()
        stop_task.cancel()

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._mark_sent()

    async def _mark_sent(self) -> None:
        sent, self._sent = self._sent, []
        if not sent:
            return
        try:
            async with self.db.session() as session:
                await outbox_store.mark_sent(session, sent)
        except Exception as err:
            # Keep them for the next round; were we to die first, the lease expires and they are
            # resent with WeCom's duplicate check on, so members still see each message once.
            log.warning("outbox: cannot mark %d sent rows now (%s)", len(sent), type(err).__name__)
            self._sent = sent + self._sent

    def _spawn(self, claim: outbox_store.Claim) -> None:
        if claim.id in self._in_flight:
            return
        self._in_flight.add(claim.id)
        task = asyncio.create_task(self._deliver_guarded(claim))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_guarded(self, claim: outbox_store.Claim) -> None:
        try:
            await self.deliver(claim)
        except Exception:
            # Database trouble while marking: the row's lease runs out and it is sent again, with
            # WeCom's duplicate check on, so the member still sees it once.
            log.exception("outbox row %d: could not be recorded", claim.id)
        finally:
            self._in_flight.discard(claim.id)
            self._wake.set()

    async def _route(self, claim: outbox_store.Claim) -> tuple[str, str]:
        if claim.channel == MEMBER_CHANNEL and self.addresses is not None:
            return await self.addresses.address(claim.recipient)
        return claim.channel, claim.recipient

    async def deliver(self, claim: outbox_store.Claim) -> None:
        try:
            channel, recipient = await self._route(claim)
        except Exception as err:
            await self._failed(claim, err)
            return
        pause = self._paused_until - time.monotonic()
        limiter = self.limiters.get(channel)
        wait = pause if pause > 0 else await limiter.reserve(recipient) if limiter is not None else 0.0
        if wait > 0:
            await self._defer(claim, wait)
            return
        sender = self.senders.get(channel)
        try:
            if sender is None:
                raise LookupError(f"no sender for channel {channel!r}")
            # A second attempt may follow a send that reached WeCom before we crashed or timed out.
            await sender.send(recipient, claim.payload, message_id=claim.id,
                              duplicate_check=claim.attempts > 1 or bool(claim.payload.get("duplicate_check")),
                              duplicate_window=self.config.duplicate_check_interval_seconds)
        except Exception as err:
            if getattr(err, "waits_for_member", False):
                log.info("outbox row %d: %s; it waits until the member writes again", claim.id, err)
                async with self.db.session() as session:
                    await outbox_store.wait_for_member(session, claim, str(err))
                OUTBOX.labels("waiting").inc()
                return
            # Errors that mean "slow down" rather than "this message failed" (each platform's own):
            # the row waits, untried.
            throttle = getattr(err, "throttles", {}).get(getattr(err, "errcode", None))
            if throttle is not None:
                seconds = getattr(self.config, throttle)
                if self._paused_until <= time.monotonic():
                    log.warning("%s: pausing sends for %.1f s", err, seconds)
                self._paused_until = max(self._paused_until, time.monotonic() + seconds)
                await self._defer(claim, seconds)
                return
            await self._failed(claim, err)
            return
        OUTBOX.labels("sent").inc()
        self._sent.append(claim)

    async def _failed(self, claim: outbox_store.Claim, err: Exception) -> None:
        retry = is_transient(err) and claim.attempts < self.config.max_attempts
        retry_at = utcnow() + timedelta(seconds=self._backoff(claim.attempts)) if retry else None
        if is_transient(err) or hasattr(err, "errcode"):
            log.warning("outbox row %d: %s (%s)", claim.id, err, "will retry" if retry else "giving up")
        else:
            log.exception("outbox row %d failed", claim.id)
        async with self.db.session() as session:
            await outbox_store.mark_failed(session, claim, str(err), retry_at)
        OUTBOX.labels("retry" if retry else "failed").inc()

    async def _defer(self, claim: outbox_store.Claim, seconds: float) -> None:
        async with self.db.session() as session:
            await outbox_store.defer(session, claim, utcnow() + timedelta(seconds=seconds + 0.05))

    def _backoff(self, attempts: int) -> float:
        delay = min(self.config.backoff_base_seconds * 2 ** (attempts - 1), self.config.backoff_max_seconds)
        return delay * random.uniform(0.8, 1.2)
