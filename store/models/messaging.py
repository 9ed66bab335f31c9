"""The durable inbox and outbox, and the once-per-period record of periodic jobs."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, UTCDateTime, utcnow


class InboxMessage(Base):
    """A received callback, stored before it is acknowledged so that it is never lost."""

    __tablename__ = "inbox"
    # (channel, user_id, id): whether someone ever wrote on a channel, and each sender's newest
    # message, which retention keeps (store/retention.py).
    __table_args__ = (Index("ix_inbox_status_received", "status", "received_at"),
                      Index("ix_inbox_sender", "channel", "user_id", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    # The platform's retry key (MsgId, or sender + time + event fields); unique = de-duplication.
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending/processing/done/failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """A message to send through a channel's API; rows are claimed, sent and marked, never lost."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_task_purpose", "task_id", "purpose", "status"),
        Index("ix_outbox_recipient_purpose", "recipient", "purpose"),
        Index("ix_outbox_purpose_sent", "purpose", "sent_at"),
        Index("ix_outbox_sent_at", "sent_at"),  # today's sends against the app's daily quota
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # text / markdown / image / card
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Set where sending the same thing twice must be impossible (e.g. one task card per member).
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id"), index=True)
    # What the message is for: a chat reply, a task card from a broadcast, or a reminder.
    purpose: Mapped[str] = mapped_column(String(16), default="reply", server_default="reply")
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending/sending/sent/failed
    # Claims to send it through the API (one put back untried is taken off; a passive reply's answer
    # is none): the claim token, and the backoff's step.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # An earlier send's outcome is unknown (no answer from the platform, or its sender's lease ran
    # out mid-send): a retry asks the platform to drop it should the member have it already.
    may_have_been_delivered: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class JobRun(Base):
    """A periodic job's run for one period (a day, a month): the unique key lets exactly one
    instance do it, however many run the job."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("name", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
