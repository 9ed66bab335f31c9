"""WeCom's duplicate check is on exactly for a retry that may repeat a delivery: after a send that got
no answer (a timeout) or a takeover from a sender that may have died mid-send. After WeCom's error
answer nothing was delivered and the retry goes without it: with it, WeCom would drop the retry as a
copy of an identical message the member got earlier (the same question asked twice)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.channels.wecom_api import WeComError, WeComUnavailable
from bot.config import OutboxConfig
from bot.pipeline.outbox import OutboxSender
from store import outbox as outbox_store
from store.db import Database
from store.models import OutboxMessage, utcnow
from tests.conftest import Stack

LEASE = timedelta(seconds=30)


class Channel:
    """Meets each send with the next of `outcomes` (an error to raise; None, or none left: taken)
    and remembers whether each send asked for the duplicate check."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.checks: list[bool] = []

    async def send(self, recipient: str, payload: dict, *, message_id: int, duplicate_check: bool, **_: object) -> None:
        self.checks.append(duplicate_check)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


async def reply(db: Database) -> outbox_store.Claim:
    """A chat reply, queued claimed by its sender as the inbox queues it."""
    async with db.session() as session:
        return await outbox_store.add(session, channel="wecom", recipient="p1", claimed=True,
                                      payload={"kind": "text", "content": "Hi"})


async def claim_now(db: Database) -> list[outbox_store.Claim]:
    """The due rows, a retry included without waiting out its backoff."""
    async with db.session() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.status == "pending")
                              .values(next_attempt_at=utcnow()))
    async with db.session() as session:
        return await outbox_store.claim_due(session, LEASE, 10)


TIMEOUT = WeComUnavailable("message/send: TimeoutError")
BUSY = WeComError(-1, "system busy")


@pytest.mark.parametrize("outcomes, checks", [
    ([BUSY], [False, False]),  # WeCom answered: nothing delivered, the retry is a first delivery
    ([TIMEOUT], [False, True]),  # no answer: it may have been delivered
    ([TIMEOUT, BUSY], [False, True, True]),  # the error answer does not undo the timeout before it
    ([BUSY, TIMEOUT, BUSY], [False, False, True, True]),
], ids=["error", "timeout", "timeout-then-error", "error-timeout-error"])
async def test_a_retry_asks_for_the_duplicate_check_only_after_an_unknown_outcome(
        database_url: str, outcomes: list[Exception], checks: list[bool]) -> None:
    db = Database(database_url)
    channel = Channel(*outcomes)
    outbox = OutboxSender(db, {"wecom": channel}, OutboxConfig(), {})
    try:
        claim = await reply(db)
        await outbox.deliver(claim)
        while len(channel.checks) < len(checks):
            [claim] = await claim_now(db)
            await outbox.deliver(claim)
        await outbox.drain()
        assert channel.checks == checks
        async with db.session() as session:
            row = await session.get(OutboxMessage, claim.id)
            assert (row.status, row.attempts) == ("sent", len(checks))
    finally:
        await db.dispose()


async def test_a_row_taken_over_from_a_sender_that_died_keeps_the_duplicate_check(database_url: str) -> None:
    """Its sender may have died mid-send; put back untried after the takeover (the member's send
    limit, WeCom's pause), it still may have been delivered. A row never sent has no check."""
    db = Database(database_url)
    channel = Channel()
    outbox = OutboxSender(db, {"wecom": channel}, OutboxConfig(), {})
    try:
        orphan, untried = await reply(db), await reply(db)
        async with db.session() as session:
            await session.execute(update(OutboxMessage).where(OutboxMessage.id == orphan.id)
                                  .values(claimed_at=utcnow() - 2 * LEASE))
            await outbox_store.defer(session, untried, utcnow())
        claims = {c.id: c for c in await claim_now(db)}
        assert {i: c.may_have_been_delivered for i, c in claims.items()} == {orphan.id: True, untried.id: False}
        async with db.session() as session:
            await outbox_store.defer(session, claims[orphan.id], utcnow())
        [again] = await claim_now(db)
        assert (again.id, again.may_have_been_delivered) == (orphan.id, True)
        await outbox.deliver(again)
        await outbox.deliver(claims[untried.id])
        assert channel.checks == [True, False]
    finally:
        await db.dispose()


async def test_the_same_question_twice_is_answered_twice_though_the_second_reply_met_an_error(stack: Stack) -> None:
    stack.config.wecom.passive_reply_seconds = 0  # every reply through message/send
    sim = stack.sim
    await stack.ask("p2", "help")
    sim.fail_next_sends(-1, 1)  # system busy: the second reply's first send delivers nothing
    second = await stack.ask("p2", "help")
    [first, again] = sim.bot_messages("p2")
    assert first.body == again.body and second == [again.body["content"]]  # identical, within WeCom's window
    assert sim.dropped == [] and sim.api_calls["message/send"] == 3
