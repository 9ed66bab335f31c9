"""Typed SQLAlchemy models. Schema changes go through Alembic migrations in store/migrations."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, ForeignKey, Index, Integer, MetaData, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

ROLES = ("partner", "marketer", "admin")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive values and would drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    region: Mapped[str] = mapped_column(String(64), default="")
    industries: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # registered / silver / gold (store/onboarding.py); gates pools and assignment priority.
    tier: Mapped[str] = mapped_column(String(16), default="registered", server_default="registered")
    # Commission on won revenue (0.05 = 5 %); None = the rate of the partner's tier in [points].
    commission_rate: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[Member]] = relationship(back_populates="partner")


class Member(Base):
    """A person the bot knows, identified by their channel user id (WeCom userid)."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    userid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    region: Mapped[str] = mapped_column(String(64), default="")
    industries: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    partner: Mapped[Partner | None] = relationship(back_populates="members", lazy="joined")
    tags: Mapped[list[MemberTag]] = relationship(cascade="all, delete-orphan", lazy="selectin",
                                                 order_by="MemberTag.tag")

    @property
    def tag_names(self) -> list[str]:
        return [t.tag for t in self.tags]


class MemberTag(Base):
    """Free-form groups for targeting broadcasts (`tag:NAME`), from import or WeCom tags."""

    __tablename__ = "member_tags"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


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
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # poster / link / other
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class InboxMessage(Base):
    """A received callback, stored before it is acknowledged so that it is never lost."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_status_received", "status", "received_at"),)

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
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class TrackedLink(Base):
    """A member's own link for a task and channel; its short code is what posters and links carry."""

    __tablename__ = "tracked_links"
    __table_args__ = (UniqueConstraint("task_id", "member_id", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
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


LEAD_STATUSES = ("new", "claimed", "following", "nurturing", "won", "lost")


class Lead(Base):
    """A prospective customer. The phone is stored in full (its holder calls it) and masked
    everywhere else: chat replies to others, logs."""

    __tablename__ = "leads"
    __table_args__ = (Index("ix_leads_phone_task", "phone", "task_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    company: Mapped[str] = mapped_column(String(64), default="")
    phone: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(32), default="")
    industry: Mapped[str] = mapped_column(String(32), default="")
    source: Mapped[str] = mapped_column(String(32))  # form:poster / form:link / import / api
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    # The partner whose member brought the lead in (attribution), and what it came through.
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("tracked_links.id"))
    visitor_id: Mapped[str] = mapped_column(String(40), default="")
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set where one source may bring a lead in only once (e.g. a phone's form per task and day).
    dedupe_key: Mapped[str | None] = mapped_column(String(96), unique=True)
    protected_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Which pool an unowned lead waits in: a partner's own pool, or the public pool (None).
    pool_partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))  # estimated deal size
    won_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    won_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Set by a fraud rule; while `held`, the lead counts nowhere (stats, roi, tiers, points).
    flag_id: Mapped[int | None] = mapped_column(ForeignKey("flags.id"), index=True)
    held: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_follow_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A nurturing (孵化) lead is not ready to buy: its holder is reminded on this date.
    next_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LeadEvent(Base):
    """Append-only audit trail: every change of hands or state of a lead."""

    __tablename__ = "lead_events"
    __table_args__ = (Index("ix_lead_events_member_kind_at", "member_id", "kind", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # created/assigned/claimed/returned/followed/won/lost/recycled
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LeadTouch(Base):
    """A tracked interaction that led to a lead, in time order: what attribution credits."""

    __tablename__ = "lead_touches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("tracked_links.id"))
    click_id: Mapped[int | None] = mapped_column(ForeignKey("clicks.id"))
    kind: Mapped[str] = mapped_column(String(8))  # click / form
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AssignmentRule(Base):
    """Data, not code: a new pool lead matching region/industry ("" = any) is given to one of the
    partner's members in turn (the one assigned longest ago), if anyone has room under max_held.
    Without a partner the rule picks by capability: partners whose industries include the lead's,
    at `min_tier` or above, the highest tier first."""

    __tablename__ = "assignment_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)  # lower first
    region: Mapped[str] = mapped_column(String(32), default="")
    industry: Mapped[str] = mapped_column(String(32), default="")
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    min_tier: Mapped[str] = mapped_column(String(16), default="registered", server_default="registered")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PoolSettings(Base):
    """An admin's overrides of the `[pool]` rules for one pool (NULL column = the config value).
    `scope` is "public" or "partner:<id>": one row per pool, also for the public one."""

    __tablename__ = "pool_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), unique=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    daily_claim_limit: Mapped[int | None] = mapped_column(Integer)
    max_held: Mapped[int | None] = mapped_column(Integer)
    idle_days: Mapped[int | None] = mapped_column(Integer)
    cooldown_days: Mapped[int | None] = mapped_column(Integer)
    protect_days: Mapped[int | None] = mapped_column(Integer)
    return_reason_required: Mapped[bool | None] = mapped_column(Boolean)
    embargo_hours: Mapped[int | None] = mapped_column(Integer)
    # Only members of partners at this tier or above see and claim this pool's leads.
    min_tier: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


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


class Invite(Base):
    """An invite code to join a partner: it expires, has a number of places, and can be revoked."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InviteUse(Base):
    """Who joined with which invite, and when (the audit trail of onboarding)."""

    __tablename__ = "invite_uses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invite_id: Mapped[int] = mapped_column(ForeignKey("invites.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobRun(Base):
    """A periodic job's run for one period (a day, a month): the unique key lets exactly one
    instance do it, however many run the job."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("name", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TierChange(Base):
    """Append-only: every change of a partner's tier, with the figures that decided it."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    old_tier: Mapped[str] = mapped_column(String(16))
    new_tier: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PointsEntry(Base):
    """Append-only incentive ledger. `basis` names what earned it (share:TASK:MEMBER, clicks:MEMBER:DAY,
    lead:ID, won:ID); a basis's entries always add up to what it is worth now, so a change (a
    flagged click, a reversed win) is a new entry, never an edit. `ref` is basis#n: unique, so two
    instances writing the same entry store it once."""

    __tablename__ = "points_ledger"
    __table_args__ = (Index("ix_points_member_at", "member_id", "at"), Index("ix_points_partner_at", "partner_id", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(80), unique=True)
    basis: Mapped[str] = mapped_column(String(72), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # share / click / lead / won / reversal
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    points: Mapped[int] = mapped_column(Integer)
    commission: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))
    note: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Flag(Base):
    """Suspicious clicks or leads found by a fraud rule, held out of every figure until an admin
    clears them (they count again) or rejects them (they stay out)."""

    __tablename__ = "flags"
    __table_args__ = (Index("ix_flags_status", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # click / lead
    rule: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(500))  # why, in words an admin can check
    link_id: Mapped[int | None] = mapped_column(ForeignKey("tracked_links.id"))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open / cleared / rejected
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FlagDecision(Base):
    """Append-only audit trail of admins' decisions on flags."""

    __tablename__ = "flag_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flag_id: Mapped[int] = mapped_column(ForeignKey("flags.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # cleared / rejected
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
