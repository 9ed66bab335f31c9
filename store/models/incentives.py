"""The points ledger and fraud flags with their decisions."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, UTCDateTime, utcnow


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
