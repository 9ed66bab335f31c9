"""The inbox: store a received message before it is acknowledged, then process it exactly once.

Processing runs the router and writes the replies to the outbox in one transaction that also
marks the inbox row done, so a crash at any point either redoes everything or nothing.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.passive import Answered, PickPassive
from bot.config import Config
from bot.logs import REQUEST_ID
from bot.metrics import COMMANDS, REPLIES, REPLY_SECONDS
from bot.pipeline.outbox import OutboxSender
from bot.pipeline.router import Router
from handlers import answers
from handlers.replies import ButtonLabel, Incoming, Reply, reply_to_payload
from store import inbox as inbox_store
from store import outbox as outbox_store
from store.bindings import HOME
from store.db import Database, left_for_after_commit, used_database
from store.models import utcnow
from store.redis import SharedKeys

log = logging.getLogger(__name__)

_TRANSIENT_DB_ERRORS = (OperationalError, DBAPIError, ConnectionError, TimeoutError, OSError)
# Driver errors about the statement itself (too many variables, too deep): the same statement fails
# the same way every time, so retrying only delays the answer.
_STATEMENT_ERRORS = ("too many sql variables", "expression tree is too large", "too many terms in compound select",
                     "string or blob too big", "number of query arguments cannot exceed")


def is_transient(err: BaseException) -> bool:
    """A database or network hiccup worth retrying later."""
    if not isinstance(err, _TRANSIENT_DB_ERRORS):
        return False
    driver_message = str(getattr(err, "orig", None) or err).lower()  # not the SQL text around it
    return not any(marker in driver_message for marker in _STATEMENT_ERRORS)


# A passive reply written into its answer is remembered this long: the platform's retries of one
# callback end within about 20 s.
_ANSWERED_MEMORY_SECONDS = 600
# A retried callback replays a passive reply once the first answer's deadline has passed by this
# much (two instances' clocks may differ), or at the latest this long before its own deadline.
_CLOCK_SKEW_SECONDS = 0.5
_REPLAY_LAST_CHANCE_SECONDS = 0.2
_REPLAY_POLL_SECONDS = 0.05
# A sender's member as read when their message was stored is used for at most this long after: a
# role changed or a member removed meanwhile applies from the next message (as it would to a message
# whose handler was already running), never later than this.
_SENDER_FRESH_SECONDS = 1.0


@dataclass(frozen=True)
class _Waiter:
    """A callback waiting for its message's replies until `deadline`, to answer with one (`pick`)."""

    answered: asyncio.Future[Answered]
    deadline: float
    pick: PickPassive


class LostClaim(Exception):
    """Another worker took the message over (our lease ran out); our work is rolled back."""


class InboxProcessor:
    def __init__(self, db: Database, shared: SharedKeys, router: Router, outbox: OutboxSender,
                 config: Config, after_commit: Callable[[int], Awaitable[object]] | None = None) -> None:
        """`after_commit(inbox_id)`: what a handler recorded for another system (a `forward N`), done once
        its message is committed and before its replies go out — only for messages whose unit of work
        noted such a thing (store.db.leave_for_after_commit); a periodic job finishes what it missed."""
        self.db = db
        self.shared = shared
        self.router = router
        self.outbox = outbox
        self.config = config
        self.after_commit = after_commit
        self.lease = timedelta(seconds=config.inbox.lease_seconds)
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: dict[int, _Waiter] = {}
        # Fewer workers than pooled connections, so callbacks always find a connection to store with.
        self._concurrency = asyncio.Semaphore(8)

    async def receive(self, channel: str, dedupe_key: str, message: Incoming) -> bool:
        """Durably store a received message and start on it; False when it is a platform retry."""
        claim = await self._store(channel, dedupe_key, message)
        if claim is None:
            return False
        self.submit(claim.id, claim)
        return True

    async def receive_and_wait(self, channel: str, dedupe_key: str, message: Incoming, deadline: float,
                               pick: PickPassive) -> tuple[bool, Answered | None]:
        """Like receive, but when the message is answered before `deadline` (time.monotonic()) its
        replies are handed back (one of them, chosen by `pick`, recorded answered for the callback's
        answer) instead of to the outbox; None when not. A retry gets the passive reply its first
        answer should have carried, if that never arrived (_replay)."""
        arrived, budget = time.time(), deadline - time.monotonic()
        claim = await self._store(channel, dedupe_key, message)
        if claim is None:
            return False, self._noting_written(dedupe_key, await self._replay(dedupe_key, arrived, budget, deadline))
        inbox_id = claim.id
        waiter = _Waiter(asyncio.get_running_loop().create_future(), deadline, pick)
        self._waiters[inbox_id] = waiter
        self.submit(inbox_id, claim)
        try:
            answered = await asyncio.wait_for(asyncio.shield(waiter.answered), max(deadline - time.monotonic(), 0))
        except asyncio.TimeoutError:
            answered = waiter.answered.result() if waiter.answered.done() else None
        try:
            return True, self._noting_written(dedupe_key, answered)
        finally:
            # From here on the processor sends them itself; if it handed them over while we were
            # cancelled (a shutdown), they go to the outbox now rather than wait for their lease.
            self._waiters.pop(inbox_id, None)
            if waiter.answered.done() and asyncio.current_task() is not None and asyncio.current_task().cancelling():
                self.outbox.submit_claimed(waiter.answered.result().claims)

    async def _store(self, channel: str, dedupe_key: str, message: Incoming) -> inbox_store.Claim | None:
        """The database's unique key alone spots a retry (and decides races between instances): a
        Redis "seen" key in front of it cost every message two round trips (EXISTS, SET) to save the
        rare retry one INSERT. The row is stored already claimed by this instance, which processes
        it right away; a WeCom sender's member is read along with it (the router's first lookup)."""
        payload, now, sender = message.to_payload(), utcnow(), None
        async with self.db.single_statement() as session:
            if message.channel == HOME:
                inbox_id, sender = await inbox_store.add_reading_sender(
                    session, channel=channel, dedupe_key=dedupe_key, user_id=message.user_id, payload=payload,
                    claimed_at=now)
            else:
                inbox_id = await inbox_store.add(session, channel=channel, dedupe_key=dedupe_key,
                                                 user_id=message.user_id, payload=payload, claimed_at=now)
        if inbox_id is None:
            return None
        return inbox_store.Claim(inbox_id, 1, payload, now, sender)

    def _noting_written(self, dedupe_key: str, answered: Answered | None) -> Answered | None:
        if answered is None or answered.passive is None:
            return answered

        async def written() -> None:
            await self.shared.set(f"answered:{dedupe_key}", repr(time.time()), _ANSWERED_MEMORY_SECONDS)

        return dataclasses.replace(answered, written=written)

    async def _replay(self, dedupe_key: str, arrived: float, budget: float, deadline: float) -> Answered | None:
        """A retried callback whose message was answered passively. The platform retries only an
        answer it did not get: the instance died before writing it, or it came too late, or was lost
        on the way. So this answer carries the reply (and the first one's fallback can no longer send
        it) once the first answer cannot come any more: written before this retry was sent (`arrived`,
        time.time()), or not written and past its deadline (it writes nothing after it). A duplicate
        sent while the message was still being answered waits to see how that ends."""
        try:
            while True:
                async with self.db.single_statement() as session:
                    state = await outbox_store.passive_state(session, dedupe_key)
                if state is None or (state.finished and state.answered_at is None):
                    return None  # its replies went (or go) as messages
                last_chance = time.monotonic() >= deadline - _REPLAY_LAST_CHANCE_SECONDS
                if state.answered_at is not None:
                    written_at = await self.shared.get(f"answered:{dedupe_key}")
                    if written_at is not None:
                        lost = float(written_at) < arrived
                    else:
                        lost = last_chance or utcnow() >= state.answered_at + timedelta(
                            seconds=budget + _CLOCK_SKEW_SECONDS)
                    if lost:
                        async with self.db.single_statement() as session:
                            replayed = await outbox_store.replay_answered(session, dedupe_key)
                        return Answered([replayed], replayed) if replayed is not None else None
                    if written_at is not None:
                        return None  # the answer went out after this duplicate was sent
                if last_chance:
                    return None  # still being processed: its replies go as messages
                await asyncio.sleep(_REPLAY_POLL_SECONDS)
        except Exception as err:
            log.warning("cannot look up the passive reply of a retried callback (%s)", type(err).__name__)
            return None

    def _passive_choice(self, inbox_id: int, replies: list[Reply]) -> int | None:
        """Which reply goes into the answer of a callback still waiting in time, if one fits."""
        waiter = self._waiters.get(inbox_id)
        if waiter is None or waiter.answered.done() or time.monotonic() >= waiter.deadline or not replies:
            return None
        try:
            return waiter.pick([reply_to_payload(r) for r in replies])
        except Exception:
            log.exception("inbox row %d: cannot pick a passive reply; all go as messages", inbox_id)
            return None

    def _hand_over(self, inbox_id: int, claims: list[outbox_store.Claim], passive: int | None = None) -> None:
        """Replies go to a callback still waiting for them, or else straight to the outbox (a reply
        recorded sent for an answer that is no longer waiting is sent, and recorded sent again)."""
        waiter = self._waiters.pop(inbox_id, None)
        if waiter is not None and not waiter.answered.done():
            waiter.answered.set_result(Answered(claims, claims[passive] if passive is not None else None))
        else:
            for claim in claims:
                REPLIES.labels(claim.channel, "active").inc()
            self.outbox.submit_claimed(claims)

    def submit(self, inbox_id: int, claim: inbox_store.Claim | None = None) -> None:
        """`claim`: the row is claimed by us already (stored so)."""
        if inbox_id in self._in_flight:
            return
        self._in_flight.add(inbox_id)
        task = asyncio.create_task(self._process_guarded(inbox_id, claim))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sweep(self) -> None:
        """Finish messages nobody is working on: left by a crash, a restart or a failed attempt."""
        async with self.db.session() as session:
            ids = await inbox_store.claimable_ids(session, self.lease)
        for inbox_id in ids:
            self.submit(inbox_id)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _process_guarded(self, inbox_id: int, claim: inbox_store.Claim | None = None) -> None:
        try:
            waiting_since = time.monotonic()
            async with self._concurrency:
                if claim is not None and time.monotonic() - waiting_since > self.lease.total_seconds() / 3:
                    # Stored claimed, then queued behind busy workers: its lease has been running
                    # meanwhile, so another instance's sweeper would take it over mid-work.
                    async with self.db.single_statement() as session:
                        if not await inbox_store.renew(session, claim):
                            return
                await self.process(inbox_id, claim)
        except Exception:
            log.exception("inbox row %d: could not be processed now; the sweeper will retry", inbox_id)
        finally:
            self._in_flight.discard(inbox_id)

    async def process(self, inbox_id: int, claim: inbox_store.Claim | None = None) -> None:
        """`claim`: ours already (the row was stored claimed); else claimed here first."""
        REQUEST_ID.set(f"in-{inbox_id}")  # this task's log lines name the message they are about
        if claim is None:
            async with self.db.single_statement() as session:
                claim = await inbox_store.claim(session, inbox_id, self.lease)
        if claim is None:
            return
        message = Incoming.from_payload(claim.payload)
        if claim.attempts > self.config.inbox.max_attempts:
            await self._give_up(claim, message, "too many attempts")
            return
        try:
            async with self.db.session() as session:
                replies = bind_button_labels(message, await self.router.dispatch(
                    session, message, claim.id, self._fresh_sender(claim)))
                left_behind = left_for_after_commit(session)
                passive = self._passive_choice(claim.id, replies)
                touched = used_database(session)
                if len(replies) <= 1 and self.db.dialect == "postgresql" and not touched:
                    # Nothing read or written so far: the reply and the message's end, one statement on
                    # PostgreSQL (outbox.add_finishing), are the whole unit of work, atomic without a
                    # transaction around it, which would cost a BEGIN and a COMMIT round trip.
                    async with self.db.single_statement() as alone:
                        outbox_claims = await self._enqueue(alone, message, replies, claim.id, passive,
                                                            finishing=claim)
                else:
                    outbox_claims = await self._enqueue(session, message, replies, claim.id, passive,
                                                        finishing=claim)
        except LostClaim:
            log.warning("inbox row %d was taken over by another worker", inbox_id)
            COMMANDS.labels("taken_over").inc()
            return
        except Exception as err:
            if is_transient(err):
                log.warning("inbox row %d: database trouble (%s); will retry", inbox_id, type(err).__name__)
                async with self.db.session() as session:
                    await inbox_store.release(session, claim, type(err).__name__)
                COMMANDS.labels("retry").inc()
                return
            log.exception("inbox row %d: handler failed", inbox_id)
            COMMANDS.labels("failed").inc()
            await self._give_up(claim, message, f"{type(err).__name__}: {err}")
            return
        COMMANDS.labels("answered").inc()
        if self.after_commit is not None and left_behind:
            try:
                await self.after_commit(claim.id)
            except Exception:
                log.exception("inbox row %d: its side effects failed; the periodic job retries them", inbox_id)
        if claim.received_at is not None:
            REPLY_SECONDS.observe(max((utcnow() - claim.received_at).total_seconds(), 0.0))
        self._hand_over(claim.id, outbox_claims, passive)
        if touched:
            # The handler may have queued more (a broadcast). One that did not reach the database
            # queued nothing, and a look for due rows after each such message cost a round trip.
            self.outbox.kick()

    @staticmethod
    def _fresh_sender(claim: inbox_store.Claim) -> inbox_store.Sender | None:
        """The sender read when the message was stored, unless that was long enough ago (it waited
        for a worker) that a member's role or leaving since then matters: then the router reads it."""
        if claim.sender is None or time.monotonic() - claim.sender.read_at > _SENDER_FRESH_SECONDS:
            return None
        return claim.sender

    async def _give_up(self, claim: inbox_store.Claim, message: Incoming, error: str) -> None:
        async with self.db.session() as session:
            if not await inbox_store.finish(session, claim, "failed", error[:1000]):
                return
            passive = self._passive_choice(claim.id, [answers.APOLOGY])
            outbox_claims = await self._enqueue(session, message, [answers.APOLOGY], claim.id, passive)
        self._hand_over(claim.id, outbox_claims, passive)

    @staticmethod
    async def _enqueue(session: AsyncSession, message: Incoming, replies: list[Reply], inbox_id: int,
                       passive: int | None = None, finishing: inbox_store.Claim | None = None
                       ) -> list[outbox_store.Claim]:
        """The replies queued claimed by us; `passive` (an index) recorded sent, for the callback's answer.
        `finishing`: the message's claim, marked done along with the last reply (LostClaim if taken over)."""
        queued = []
        for i, reply in enumerate(replies):
            fields = dict(channel=message.channel, recipient=message.user_id, payload=reply_to_payload(reply),
                          claimed=True, sent=i == passive)
            if finishing is not None and i == len(replies) - 1:
                queued.append(await outbox_store.add_finishing(session, finishing, **fields))
            else:
                queued.append(await outbox_store.add(session, inbox_id=inbox_id, **fields))
        if finishing is not None:
            finished = queued[-1] is not None if replies else await inbox_store.finish(session, finishing, "done")
            if not finished:
                raise LostClaim()
        return queued  # type: ignore[return-value]


def bind_button_labels(message: Incoming, replies: list[Reply]) -> list[Reply]:
    """A button label belongs to the card tap it answers (its response code); a message that was not
    a tap on a platform card (typed, or a WeChat menu item) has no button to relabel."""
    if message.kind != "card_event" or not message.response_code:
        return [r for r in replies if not isinstance(r, ButtonLabel)]
    return [dataclasses.replace(r, response_code=message.response_code) if isinstance(r, ButtonLabel) else r
            for r in replies]
