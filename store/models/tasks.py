"""Co-marketing tasks, their broadcasts and shares, tracked links and the clicks on them."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, UTCDateTime, utcnow


TASK_STATUSES = ("draft", "active", "ended")


class Task(Base):
    """A co-marketing task: content partners share, with a target URL their tracked links lead to."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    target_url: Mapped[str] = mapped_column(String(2000))
    poster_template: Mapped[str] = mapped_column(String(32), default="classic")
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    creator_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set by the one instance that sent the automatic pre-deadline reminder.
    auto_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the task cost (media, incentives): the denominator of its ROI.
    cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))


class Broadcast(Base):
    """One `broadcast` command: who asked, for which targets, and how many new recipients it queued."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    targets: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    recipients: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Share(Base):
    """A poster or link handed out to a member for a task: what `tasks` and `remind` call "shared"."""

    __tablename__ = "shares"
    __table_args__ = (Index("ix_shares_task_member", "task_id", "member_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A task's share, or (task_id null) a copy of a content item taken: one per member and item.
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    content_id: Mapped[int | None] = mapped_column(ForeignKey("content_items.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # poster / link / other
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class TrackedLink(Base):
    """A member's own link for a task (or a content item) and channel; its short code is what posters
    and links carry. Exactly one of task_id and content_id is set."""

    __tablename__ = "tracked_links"
    __table_args__ = (UniqueConstraint("task_id", "member_id", "channel"),
                      UniqueConstraint("content_id", "member_id", "channel"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    content_id: Mapped[int | None] = mapped_column(ForeignKey("content_items.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # poster / link / other
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Click(Base):
    """One visit of a tracked link. Never the raw IP: a salted hash, enough to tell visitors apart."""

    __tablename__ = "clicks"
    __table_args__ = (Index("ix_clicks_link_at", "link_id", "at"), Index("ix_clicks_visitor", "visitor_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("tracked_links.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    visitor_id: Mapped[str] = mapped_column(String(40))
    ip_hash: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    referrer: Mapped[str] = mapped_column(String(1024), default="")
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    # First visit of this visitor to this link within 24 hours.
    is_unique: Mapped[bool] = mapped_column(Boolean, default=False)
    # The click's id in the buffer it came through, so a batch written twice is stored once.
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    # Set by a fraud rule; while `held`, the click counts nowhere (stats, tiers, points).
    flag_id: Mapped[int | None] = mapped_column(ForeignKey("flags.id"), index=True)
    held: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ClickDaily(Base):
    """Clicks per link and local day (the deployment's time zone), kept up to date as click
    batches are stored, so stats sum a few rows per link instead of scanning every click."""

    __tablename__ = "click_daily"
    __table_args__ = (UniqueConstraint("day", "link_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("tracked_links.id"), index=True)
    clicks: Mapped[int] = mapped_column(Integer, default=0)  # human clicks
    unique_clicks: Mapped[int] = mapped_column(Integer, default=0)  # human, first of a visitor in 24 h
    bot_clicks: Mapped[int] = mapped_column(Integer, default=0)
    held_clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # flagged, not counted
