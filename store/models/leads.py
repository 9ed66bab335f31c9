"""Leads, their audit trail and touches, assignment rules and per-pool rules."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, UTCDateTime, utcnow


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
