"""Sends outbox rows through their channel: claim, respect the per-member limit, send, mark.

Queued rows (a broadcast) go in batches: one statement claims a batch, one Redis call per 64 sends
reserves the members' send slots, a fixed set of sender coroutines sends with bounded concurrency
(SendSlots, which WeCom's 45033 narrows), and one statement marks what was sent. A batch whose sends take long renews
its lease before it could run out. Replies to chat arrive already claimed and go out at once.
Transient errors back off and retry; other errors are recorded on the row.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import timedelta
from typing import Any

from bot.channels.base import ChannelSender
from bot.channels.member import MemberAddresses
from bot.config import OutboxConfig
from bot.metrics import OUTBOX
from bot.pipeline.ratelimit import MemberRateLimiter, SendSlots
from store import outbox as outbox_store
from store.bindings import MEMBER_CHANNEL
from store.db import Database
from store.models import utcnow

log = logging.getLogger(__name__)
SENT = OUTBOX.labels("sent")  # counted per message: the label is looked up once
# Send slots are reserved in Redis this many cards at a time (or the send slots' number, if more):
# a call per 16 cards was a tenth of a broadcast's CPU (issue 17). A reservation then precedes its
# send by up to two chunks' worth of sends, tens of milliseconds against WeCom's minute and hour.
RESERVE_CHUNK = 64


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
        self.slots = SendSlots(config.concurrency)
        # A batch's sends are handed to a fixed set of sender coroutines (as many as the slots'
        # ceiling) through a queue: a task made and discarded per card cost more than the queue.
        self._sends: asyncio.Queue[tuple[outbox_store.Claim, str, str]] = asyncio.Queue()
        self._senders: list[asyncio.Task[None]] = []
        # Sent rows are marked in batches by the run loop: one statement instead of one per row.
        self._sent: list[outbox_store.Claim] = []
        self._marking: asyncio.Task[None] | None = None

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
            if claim.recorded_sent:  # a passive reply that did not go into its answer
                taken = await self._take_answered(claim)
                if taken is None:
                    continue
                claim = taken
            elif time.monotonic() - started > self.lease.total_seconds() / 3:
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

    async def _take_answered(self, claim: outbox_store.Claim) -> outbox_store.Claim | None:
        """The message's own retry may be answering with it (store.outbox.replay_answered): only one may."""
        try:
            async with self.db.single_statement() as session:
                taken = await outbox_store.take_answered(session, claim)
        except Exception:  # only a retry of its callback can still deliver it
            log.exception("outbox row %d: cannot take a passive reply to send it as a message", claim.id)
            taken = None
        if taken is None:
            self._in_flight.discard(claim.id)
        return taken

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Claim due rows a batch at a time and start their sends; sleep until kicked, the last send
        ends, or the interval. Ends (between batches, never half-way through one) when `stop` is set.

        While a full batch sends, the next is claimed and the last one's sent rows are marked: were
        the loop to wait for those statements between batches, the sends in flight would run out
        and the send slots stand idle for the database's round trips (issue 17)."""
        stop_task = asyncio.ensure_future(stop.wait())
        stop_task.add_done_callback(lambda _: self._wake.set())
        batch = self.config.claim_batch
        ahead: asyncio.Task[tuple[list[outbox_store.Claim], float]] | None = None
        while not stop.is_set():
            self._mark_sent_meanwhile()
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            claims, claimed_at = await (ahead if ahead is not None else self._claim(batch))
            ahead = None
            if len(claims) == batch and not stop.is_set():
                ahead = asyncio.create_task(self._claim(batch))  # more are due: claim them meanwhile
            if claims:
                await self._dispatch(claims, claimed_at)
            if len(claims) == batch:
                continue  # the batch's last sends are under way meanwhile
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
        if ahead is not None:  # claimed for a batch that will not start: back to pending, untried
            claims, _ = await ahead
            if claims:
                await self._defer_all(claims, 0.0)
        stop_task.cancel()

    async def _claim(self, batch: int) -> tuple[list[outbox_store.Claim], float]:
        """Up to `batch` due rows, and when (time.monotonic()) their lease began."""
        claimed_at = time.monotonic()
        try:
            # One statement, atomic by itself: in autocommit it costs one round trip, not three.
            async with self.db.single_statement() as session:
                return await outbox_store.claim_due(session, self.lease, batch, self._in_flight), claimed_at
        except Exception as err:
            log.warning("outbox: cannot claim rows now (%s)", type(err).__name__)
            return [], claimed_at

    async def _dispatch(self, claims: list[outbox_store.Claim], claimed_at: float | None = None) -> None:
        """Start the sends of a claimed batch, a block (RESERVE_CHUNK) at a time: the block's send slots
        are reserved in one call, asked for while the block before it starts its last sends, so the
        sends do not wait for it. Returns when the last send has
        started. `claimed_at`: when the batch's lease began (time.monotonic(); now if not given)."""
        self._in_flight.update(c.id for c in claims)
        routed: list[tuple[outbox_store.Claim, str, str]] = []
        for claim in claims:
            try:
                channel, recipient = await self._route(claim)
            except Exception as err:
                await self._settle(claim, self._failed(claim, err, tried_to_send=False))
                continue
            routed.append((claim, channel, recipient))
        leased_at = time.monotonic() if claimed_at is None else claimed_at
        reserving = self._reserve_next(routed)
        while reserving is not None:
            block, routed, reservation = reserving
            reserved = list(zip(block, await reservation))
            reserving = None
            # The block's sends start a slots' worth at a time, each such chunk checking first
            # whether WeCom said to slow down and whether the batch's lease wants renewing.
            while reserved:
                if self._paused_until > time.monotonic():
                    # WeCom asked the app to slow down: the rest wait, untried.
                    await self._defer_all([c for (c, _, _), _ in reserved] + [c for c, _, _ in routed],
                                          self._paused_until - time.monotonic())
                    return
                if time.monotonic() - leased_at > self.lease.total_seconds() / 3:
                    # Slow sends today: mark what went out (its lease is as old) and keep the rest ours.
                    await self._mark_sent()
                    kept = {c.id for c, _, _ in await self._renew([r for r, _ in reserved] + routed)}
                    reserved = [(r, w) for r, w in reserved if r[0].id in kept]
                    routed = [r for r in routed if r[0].id in kept]
                    leased_at = time.monotonic()
                chunk, reserved = reserved[:self.slots.limit], reserved[self.slots.limit:]
                if not reserved:  # the next block's reservation overlaps this chunk's sends
                    reserving = self._reserve_next(routed)
                for (claim, channel, recipient), wait in chunk:
                    if wait > 0:
                        await self._settle(claim, self._defer(claim, wait))
                        continue
                    await self.slots.acquire()  # so the queue never holds more than the free senders take
                    if not self._senders:
                        self._senders = [asyncio.create_task(self._send_queued()) for _ in range(self.slots.ceiling)]
                    self._sends.put_nowait((claim, channel, recipient))
            if reserving is None:  # the renewal left none of this block
                reserving = self._reserve_next(routed)

    async def _send_queued(self) -> None:
        """One of the sender coroutines: sends what _dispatch queued, in a slot it took, until drained."""
        while True:
            claim, channel, recipient = await self._sends.get()
            try:
                await self._send_in_slot(claim, channel, recipient)
            finally:
                self._sends.task_done()

    def _reserve_next(self, routed: list[tuple[outbox_store.Claim, str, str]]) -> Any:
        """Start reserving the next block's send slots: (block, the rest, the reservation), or None."""
        if not routed:
            return None
        size = max(self.slots.limit, RESERVE_CHUNK)
        chunk, rest = routed[:size], routed[size:]
        return chunk, rest, asyncio.ensure_future(self._reserve(chunk))

    async def _reserve(self, chunk: list[tuple[outbox_store.Claim, str, str]]) -> list[float]:
        """Each send's slot under its channel's per-member limits: one call per channel."""
        waits = [0.0] * len(chunk)
        for channel, limiter in self.limiters.items():
            places = [i for i, (_, routed_to, _) in enumerate(chunk) if routed_to == channel]
            if places:
                for i, wait in zip(places, await limiter.reserve_many([chunk[i][2] for i in places])):
                    waits[i] = wait
        return waits

    async def _renew(self, routed: list[tuple[outbox_store.Claim, str, str]]) -> list[tuple[outbox_store.Claim, str, str]]:
        """Sends are slow today: keep the rest of the batch ours, or leave to another sender what it took."""
        try:
            async with self.db.session() as session:
                ours = await outbox_store.renew_many(session, [c for c, _, _ in routed])
        except Exception as err:
            log.warning("outbox: cannot renew a batch's lease (%s)", type(err).__name__)
            ours = set()
        for claim, _, _ in routed:
            if claim.id not in ours:
                self._in_flight.discard(claim.id)
        return [r for r in routed if r[0].id in ours]

    async def _defer_all(self, claims: list[outbox_store.Claim], seconds: float) -> None:
        try:
            async with self.db.session() as session:
                for claim in claims:
                    await outbox_store.defer(session, claim, utcnow() + timedelta(seconds=seconds + 0.05))
        except Exception as err:  # the lease runs out and they are taken again
            log.warning("outbox: cannot put %d rows back now (%s)", len(claims), type(err).__name__)
        finally:
            self._in_flight.difference_update(c.id for c in claims)
            self._wake.set()

    async def _settle(self, claim: outbox_store.Claim, recording: Any) -> None:
        """Record what became of a row that is not sent now, and let it go."""
        try:
            await recording
        except Exception:
            log.exception("outbox row %d: could not be recorded", claim.id)
        finally:
            self._in_flight.discard(claim.id)

    async def _send_in_slot(self, claim: outbox_store.Claim, channel: str, recipient: str) -> None:
        try:
            pause = self._paused_until - time.monotonic()
            if pause > 0:  # a send of this chunk was just told to slow down
                await self._defer(claim, pause)
            else:
                await self._send(claim, channel, recipient)
        except Exception:
            log.exception("outbox row %d: could not be recorded", claim.id)
        finally:
            self.slots.release()
            self._in_flight.discard(claim.id)
            if not self.slots.busy:
                self._wake.set()  # the batch is done: mark it without waiting for the interval

    async def drain(self) -> None:
        await self._sends.join()
        senders, self._senders = self._senders, []
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._mark_sent()

    async def _mark_sent(self) -> None:
        sent, self._sent = self._sent, []
        if not sent:
            return
        try:
            async with self.db.single_statement() as session:  # one statement, as the claim
                await outbox_store.mark_sent(session, sent)
        except Exception as err:
            # Keep them for the next round; were we to die first, the lease expires and they are
            # resent with WeCom's duplicate check on, so members still see each message once.
            log.warning("outbox: cannot mark %d sent rows now (%s)", len(sent), type(err).__name__)
            self._sent = sent + self._sent

    def _mark_sent_meanwhile(self) -> None:
        """Mark the rows sent so far in a task of their own (one at a time), not holding up the next batch."""
        if not self._sent or self._marking is not None:
            return
        self._marking = task = asyncio.create_task(self._mark_sent())
        self._tasks.add(task)

        def done(_: object) -> None:
            self._tasks.discard(task)
            self._marking = None

        task.add_done_callback(done)

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
            await self._failed(claim, err, tried_to_send=False)
            return
        pause = self._paused_until - time.monotonic()
        limiter = self.limiters.get(channel)
        wait = pause if pause > 0 else await limiter.reserve(recipient) if limiter is not None else 0.0
        if wait > 0:
            await self._defer(claim, wait)
            return
        await self._send(claim, channel, recipient)

    async def _send(self, claim: outbox_store.Claim, channel: str, recipient: str) -> None:
        sender = self.senders.get(channel)
        try:
            if sender is None:
                raise LookupError(f"no sender for channel {channel!r}")
            # A retry after a send that may have reached WeCom (a crash, a timeout; not an error answer).
            await sender.send(recipient, claim.payload, message_id=claim.id,
                              duplicate_check=claim.may_have_been_delivered or bool(claim.payload.get("duplicate_check")),
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
                    if throttle == "concurrency_pause_seconds":
                        self.slots.too_many()  # once per pause: the sends under way all hear it
                self._paused_until = max(self._paused_until, time.monotonic() + seconds)
                await self._defer(claim, seconds)
                return
            await self._failed(claim, err, tried_to_send=True)
            return
        SENT.inc()
        self.slots.succeeded()
        self._sent.append(claim)

    async def _failed(self, claim: outbox_store.Claim, err: Exception, *, tried_to_send: bool) -> None:
        retry = is_transient(err) and claim.attempts < self.config.max_attempts
        retry_at = utcnow() + timedelta(seconds=self._backoff(claim.attempts)) if retry else None
        if is_transient(err) or hasattr(err, "errcode"):
            log.warning("outbox row %d: %s (%s)", claim.id, err, "will retry" if retry else "giving up")
        else:
            log.exception("outbox row %d failed", claim.id)
        # An error code is the platform's answer: it took nothing. Any other failure of a send (a
        # timeout, a dropped connection) may have come after the platform took the message.
        unknown = tried_to_send and getattr(err, "errcode", None) is None
        async with self.db.session() as session:
            await outbox_store.mark_failed(session, claim, str(err), retry_at, may_have_been_delivered=unknown)
        OUTBOX.labels("retry" if retry else "failed").inc()

    async def _defer(self, claim: outbox_store.Claim, seconds: float) -> None:
        async with self.db.session() as session:
            await outbox_store.defer(session, claim, utcnow() + timedelta(seconds=seconds + 0.05))

    def _backoff(self, attempts: int) -> float:
        delay = min(self.config.backoff_base_seconds * 2 ** (attempts - 1), self.config.backoff_max_seconds)
        return delay * random.uniform(0.8, 1.2)
