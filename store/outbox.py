"""The outbox: messages to send, written in the same transaction as what caused them.

Senders claim rows with a conditional UPDATE (attempts is the claim token), send, then mark them.
A row whose sender died is taken over after its lease and resent with the platform's duplicate
check on, so a crash between sending and marking does not show the member the message twice. So is
a row whose send had no answer (a timeout): the row records that it may have been delivered. A
retry after the platform's error answer goes without the check, or the platform would drop it as
a copy of an identical message the member got earlier (the same question asked twice).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, all_, and_, bindparam, case, cast, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from store import inbox
from store.bindings import MEMBER_CHANNEL
from store.models import InboxMessage, Member, OutboxMessage, utcnow


@dataclass(frozen=True)
class Claim:
    id: int
    attempts: int
    channel: str
    recipient: str
    payload: dict[str, Any]
    # An earlier attempt may have reached the member (a send that timed out, an instance that died
    # mid-send): the platform is then asked to drop a duplicate.
    may_have_been_delivered: bool = False
    # When it was recorded sent in a callback's answer (a passive reply, status ANSWERED), else None.
    # No sender takes such a row over, so it needs no renewal; sending it as a message first takes it
    # (take_answered). Answers are not sends and leave attempts alone: this is their claim token.
    answered_at: datetime | None = None

    @property
    def recorded_sent(self) -> bool:
        return self.answered_at is not None


# A passive reply: written into the answer to the member's callback, not sent through the API. It
# stays so for good (it costs none of the app's send quota) unless the platform's retry of that
# callback shows the answer never arrived (replay_answered) or it could not be written (take_answered).
ANSWERED = "answered"


async def add(session: AsyncSession, *, channel: str, recipient: str, payload: dict[str, Any],
              inbox_id: int | None = None, dedupe_key: str | None = None, claimed: bool = False,
              sent: bool = False) -> Claim:
    """Queue a message. `claimed` queues it already claimed by the caller, who sends it right after
    the commit (saving a claim round trip); should the caller die, the lease hands it to others.
    `sent` records it ANSWERED (with `claimed`): a passive reply, which goes out in the answer to the
    callback once this commits; should that fail, the caller takes it (take_answered) and sends it."""
    # A Core statement on the table, built once: not an ORM object and a flush, and not an insert of
    # the mapped class either, which runs the ORM's bulk-insert machinery on every execution (a third
    # of this statement's CPU in the callback profile). Every chat reply passes here.
    statement = _ADD.get(session.bind.dialect.name)
    if statement is None:
        statement = _ADD[session.bind.dialect.name] = insert(_OUTBOX).values(
            {column: bindparam(column, type_=_OUTBOX.c[column].type) for column in _ADD_COLUMNS}
        ).returning(_OUTBOX.c.id)
    values = _row(channel, recipient, payload, inbox_id, dedupe_key, claimed or sent, sent)
    return _claim_of(await session.scalar(statement, values), values, payload)


async def add_finishing(session: AsyncSession, finishing: inbox.Claim, *, channel: str, recipient: str,
                        payload: dict[str, Any], claimed: bool = False, sent: bool = False) -> Claim | None:
    """`add` a reply to the inbox message `finishing` and mark that message done (inbox.finish), on
    PostgreSQL in one statement: one round trip fewer on every chat message. None, and nothing
    queued, when the claim was taken over meanwhile (the caller rolls its work back)."""
    if session.bind.dialect.name != "postgresql":
        if not await inbox.finish(session, finishing, "done"):
            return None
        return await add(session, channel=channel, recipient=recipient, payload=payload, inbox_id=finishing.id,
                         claimed=claimed, sent=sent)
    values = _row(channel, recipient, payload, finishing.id, None, claimed or sent, sent)
    row_id = await session.scalar(_finishing_statement(), {
        **{f"reply_{column}": value for column, value in values.items()},
        "claim_id": finishing.id, "claim_attempts": finishing.attempts, "now": values["created_at"]})
    return None if row_id is None else _claim_of(row_id, values, payload)


def _finishing_statement() -> Any:
    """WITH done AS (UPDATE inbox ... RETURNING id) INSERT INTO outbox SELECT ... FROM done: the
    reply is inserted only if the claim was still ours, so no row means the claim was lost."""
    statement = _ADD.get("finishing")
    if statement is None:
        done = inbox.finish_statement("done").returning(InboxMessage.id).cte("done")
        # Typed parameters: asyncpg's dialect renders them with the casts ($1::VARCHAR) PostgreSQL needs in
        # a SELECT list. Named apart from the inbox's columns: an UPDATE turns any execution parameter
        # named like one of its table's columns into one more SET. The message's id comes from the UPDATE.
        row = select(*(done.c.id if column == "inbox_id" else
                       bindparam(f"reply_{column}", type_=_OUTBOX.c[column].type) for column in _ADD_COLUMNS))
        statement = _ADD["finishing"] = (insert(_OUTBOX).from_select(_ADD_COLUMNS, row)
                                         .add_cte(done, nest_here=True).returning(_OUTBOX.c.id))
    return statement


def _row(channel: str, recipient: str, payload: dict[str, Any], inbox_id: int | None, dedupe_key: str | None,
         claimed: bool, sent: bool) -> dict[str, Any]:
    now = utcnow()
    return {"channel": channel, "recipient": recipient, "kind": payload["kind"], "payload": payload,
            "inbox_id": inbox_id, "dedupe_key": dedupe_key, "purpose": "reply",
            "status": ANSWERED if sent else "sending" if claimed else "pending",
            # attempts counts sends through the API: a passive reply (ANSWERED) has had none
            "attempts": 1 if claimed and not sent else 0, "claimed_at": now if claimed else None,
            "next_attempt_at": now, "created_at": now, "sent_at": now if sent else None,
            "may_have_been_delivered": False}


def _claim_of(row_id: int, values: dict[str, Any], payload: dict[str, Any]) -> Claim:
    return Claim(row_id, values["attempts"], values["channel"], values["recipient"], payload,
                 answered_at=values["claimed_at"] if values["status"] == ANSWERED else None)


_ADD_COLUMNS = ("channel", "recipient", "kind", "payload", "inbox_id", "dedupe_key", "purpose", "status", "attempts",
                "claimed_at", "next_attempt_at", "created_at", "sent_at", "may_have_been_delivered")
# Per dialect, and the PostgreSQL statement that also finishes an inbox message ("finishing").
_ADD: dict[str, Any] = {}


# The batch statements below are Core statements on the table, not ORM ones: for a 10,000-card
# broadcast the ORM's bookkeeping added about a quarter to each claimed row's cost (issue 17).
_OUTBOX = OutboxMessage.__table__


def _claimable(now: datetime, lease: timedelta):  # type: ignore[no-untyped-def]
    c = _OUTBOX.c
    return or_(and_(c.status == "pending", c.next_attempt_at <= now),
               and_(c.status == "sending", c.claimed_at < now - lease))


def _int_array(name: str, values: list[int]):  # type: ignore[no-untyped-def]
    """A list of ints as one PostgreSQL array parameter, instead of one parameter per value."""
    return cast(bindparam(name, values, type_=ARRAY(Integer)), ARRAY(Integer))


async def claim_due(session: AsyncSession, lease: timedelta, limit: int, busy: Collection[int] = ()) -> list[Claim]:
    """Claim up to `limit` due rows in one statement (on PostgreSQL, skipping rows another instance
    is claiming right now instead of waiting for them). `busy`: rows this instance is sending.
    A row taken over from status "sending" may have been delivered: its sender may have died mid-send."""
    now, c = utcnow(), _OUTBOX.c
    postgresql = session.bind.dialect.name == "postgresql"
    due = select(c.id).where(_claimable(now, lease)).order_by(c.id).limit(limit)
    if busy:
        due = due.where(c.id != all_(_int_array("busy", list(busy))) if postgresql else c.id.not_in(list(busy)))
    if postgresql:
        # Materialized, so it runs once: as a plain subquery PostgreSQL may run it again for each
        # row it updates, each run skipping the rows the statement has just updated (locked by it)
        # and bringing the next `limit`, so one claim took every due row (all 10,000 of a broadcast).
        due = select(due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED").c.id)
    result = await session.execute(
        update(_OUTBOX)
        .where(c.id.in_(due), _claimable(now, lease))
        .values(status="sending", claimed_at=now, attempts=c.attempts + 1,
                may_have_been_delivered=or_(c.may_have_been_delivered, c.status == "sending"))
        .returning(c.id, c.attempts, c.channel, c.recipient, c.payload, c.may_have_been_delivered)
    )
    return [Claim(*row) for row in result.all()]


async def take_answered(session: AsyncSession, claim: Claim) -> Claim | None:
    """A passive reply that did not go into an answer, claimed to be sent as a message instead; None
    when a retry of its callback has taken it meanwhile (replay_answered), which answers with it."""
    row = (await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == claim.id, OutboxMessage.claimed_at == claim.answered_at,
               OutboxMessage.status == ANSWERED)
        .values(status="sending", claimed_at=utcnow(), sent_at=None, attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage.attempts, OutboxMessage.may_have_been_delivered)
        .execution_options(synchronize_session=False))).first()
    if row is None:
        return None
    return Claim(claim.id, row.attempts, claim.channel, claim.recipient, claim.payload, row.may_have_been_delivered)


@dataclass(frozen=True)
class PassiveState:
    """Where a received message's passive reply stands: `finished`, the message was processed (its
    replies are queued); `answered_at`, when its reply was recorded for an answer and is still so."""

    finished: bool
    answered_at: datetime | None


async def passive_state(session: AsyncSession, inbox_dedupe_key: str) -> PassiveState | None:
    """None when no such message is stored (any more)."""
    row = (await session.execute(
        select(InboxMessage.status, OutboxMessage.claimed_at)
        .outerjoin(OutboxMessage, and_(OutboxMessage.inbox_id == InboxMessage.id, OutboxMessage.status == ANSWERED))
        .where(InboxMessage.dedupe_key == inbox_dedupe_key).limit(1))).first()
    if row is None:
        return None
    return PassiveState(row.status in ("done", "failed"), row.claimed_at)


async def replay_answered(session: AsyncSession, inbox_dedupe_key: str) -> Claim | None:
    """The passive reply to a callback the platform retries: its answer never arrived (the instance
    died before writing it, or it came too late), so the retry's answer carries it. The claim token
    (when it was answered) moves on, so the first answer's fallback (take_answered) cannot send it as well."""
    inbox_id = select(InboxMessage.id).where(InboxMessage.dedupe_key == inbox_dedupe_key).scalar_subquery()
    row = (await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.inbox_id == inbox_id, OutboxMessage.status == ANSWERED)
        .values(claimed_at=utcnow())
        .returning(OutboxMessage.id, OutboxMessage.attempts, OutboxMessage.channel, OutboxMessage.recipient,
                   OutboxMessage.payload, OutboxMessage.claimed_at)
        .execution_options(synchronize_session=False))).first()
    if row is None:
        return None
    return Claim(row.id, row.attempts, row.channel, row.recipient, row.payload, answered_at=row.claimed_at)


async def renew(session: AsyncSession, claim: Claim) -> bool:
    """Extend a claim's lease (it waited its turn); False if another sender has taken it over."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempts,
               OutboxMessage.status == "sending")
        .values(claimed_at=utcnow())
    )
    return result.rowcount == 1


async def renew_many(session: AsyncSession, claims: list[Claim]) -> set[int]:
    """Extend many claims' leases in one statement (a batch still queued here); the ids still ours."""
    if not claims:
        return set()
    result = await session.execute(
        update(OutboxMessage)
        .where(tuple_(OutboxMessage.id, OutboxMessage.attempts).in_([(c.id, c.attempts) for c in claims]),
               OutboxMessage.status == "sending")
        .values(claimed_at=utcnow())
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars().all())


async def defer(session: AsyncSession, claim: Claim, until: datetime) -> None:
    """Put a claimed row back untried (the member's send limit is reached until `until`). Whether an
    earlier attempt may have been delivered stays as it was."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempts)
        .values(status="pending", next_attempt_at=until, attempts=OutboxMessage.attempts - 1)
    )


async def mark_sent(session: AsyncSession, claims: list[Claim]) -> int:
    """Mark many rows sent in one statement (each only if its claim is still the latest); how many were."""
    if not claims:
        return 0
    c = _OUTBOX.c
    if session.bind.dialect.name == "postgresql":
        # The (id, attempts) pairs as two arrays: two parameters, not two per row.
        pairs = func.unnest(_int_array("ids", [claim.id for claim in claims]),
                            _int_array("attempts", [claim.attempts for claim in claims])
                            ).table_valued("id", "attempts").render_derived()
        latest = tuple_(c.id, c.attempts).in_(select(pairs.c.id, pairs.c.attempts))
    else:
        latest = tuple_(c.id, c.attempts).in_([(claim.id, claim.attempts) for claim in claims])
    result = await session.execute(update(_OUTBOX).where(latest).values(status="sent", sent_at=utcnow(), last_error=None))
    return result.rowcount


async def mark_failed(session: AsyncSession, claim: Claim, error: str, retry_at: datetime | None, *,
                      may_have_been_delivered: bool) -> None:
    """Record the error; with retry_at the row goes back to pending, without it it fails for good.
    `may_have_been_delivered`: this attempt's outcome is unknown (no answer from the platform). A
    definite error leaves the row as it was: an earlier attempt's unknown outcome still counts."""
    unknown = {"may_have_been_delivered": True} if may_have_been_delivered else {}
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempts)
        .values(status="pending" if retry_at else "failed", last_error=error[:1000],
                next_attempt_at=retry_at or utcnow(), **unknown)
    )


async def wait_for_member(session: AsyncSession, claim: Claim, error: str) -> None:
    """Park a row the platform will take only after the member writes again (WeChat's 48-hour window)."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempts)
        .values(status="waiting", last_error=error[:1000], attempts=OutboxMessage.attempts - 1)
    )


NOT_WRITTEN_IN_TIME = "not sent: the member did not write again in time"


def _stale_before(waiting_days: int) -> datetime:
    return utcnow() - timedelta(days=waiting_days)


async def expire_waiting(session: AsyncSession, waiting_days: int) -> int:
    """Parked for more than `waiting_days`: tasks and notices that old are no longer news. They are
    dropped, with the reason on the row (also for followers who never write again)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == "waiting", OutboxMessage.created_at < _stale_before(waiting_days))
        .values(status="failed", last_error=NOT_WRITTEN_IN_TIME)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def release_waiting(session: AsyncSession, recipients: Collection[str], *, waiting_days: int) -> int:
    """The member wrote (or now has another address): what was parked for them is due now, or
    dropped if it waited more than `waiting_days` (one statement: this runs on every WeChat message)."""
    stale = OutboxMessage.created_at < _stale_before(waiting_days)
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == "waiting", OutboxMessage.recipient.in_(list(recipients)))
        .values(status=case((stale, "failed"), else_="pending"),
                last_error=case((stale, NOT_WRITTEN_IN_TIME), else_=OutboxMessage.last_error),
                next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def count_keys(session: AsyncSession, keys: list[str]) -> int:
    """How many of these message keys are queued or sent already (a job's "done today?")."""
    return int(await session.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.dedupe_key.in_(keys))) or 0)


# WeCom lets an app send each licensed account this many messages a day, counted per recipient
# (DESIGN §10): one message to 1,000 people uses 1,000.
SENDS_PER_ACCOUNT_PER_DAY = 200
# WeCom's days, and so its daily quota, run on China's clock whatever [server] timezone says.
WECOM_DAY_ZONE = ZoneInfo("Asia/Shanghai")
# Channels whose rows go out through WeCom's message/send (a member's rows unless bound elsewhere).
WECOM_SEND_CHANNELS = ("wecom", MEMBER_CHANNEL)


@dataclass(frozen=True)
class SendQuota:
    used: int  # sent since the day began, plus queued and not yet sent
    limit: int

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def allows(self, more: int) -> bool:
        return self.used + more <= self.limit


async def send_quota(session: AsyncSession, *, now: datetime, licensed_accounts: int) -> SendQuota:
    """Today's use of the app's daily message/send quota. Without the licensed account count (0),
    the active members stand in for it: everyone the bot sends to holds an account, so that is never
    more than the real quota. Rows for members bound to WeChat are counted too (on the safe side)."""
    day_start = datetime.combine(now.astimezone(WECOM_DAY_ZONE).date(), time(0), tzinfo=WECOM_DAY_ZONE)
    accounts = licensed_accounts or int(await session.scalar(
        select(func.count()).select_from(Member).where(Member.active.is_(True))) or 0)
    # One statement, so one snapshot: counted as sent and as queued in two, a row marked sent in
    # between was in neither (seen in tests/test_quota_everywhere.py, one run in six).
    used = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.channel.in_(WECOM_SEND_CHANNELS),
        or_(and_(OutboxMessage.status == "sent", OutboxMessage.sent_at >= day_start),
            OutboxMessage.status.in_(("pending", "sending")))))
    return SendQuota(int(used or 0), accounts * SENDS_PER_ACCOUNT_PER_DAY)


async def backlog(session: AsyncSession) -> dict[str, int]:
    """Messages not yet delivered, by status (pending, sending, waiting, and deferred: waiting for room
    in WeCom's daily quota, store/quota.py), for the metrics."""
    return dict((await session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.status.in_(("pending", "sending", "waiting", "deferred")))
        .group_by(OutboxMessage.status))).all())
