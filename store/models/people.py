"""People and partners: who the bot knows, the companies they belong to, invites and tiers."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, UTCDateTime, utcnow


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
    """A person the bot knows: their WeCom userid (or an id the admin chose for people outside WeCom).
    Their ids on other channels (a WeChat openid, ...) are MemberIdentity rows, bound with a code."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    userid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    region: Mapped[str] = mapped_column(String(64), default="")
    industries: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Where tasks, reminders and notices reach them: "wecom", or a channel they are bound on.
    push_channel: Mapped[str] = mapped_column(String(16), default="wecom", server_default="wecom")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    partner: Mapped[Partner | None] = relationship(back_populates="members", lazy="joined")
    # Loaded only where asked for (selectinload): every chat message loads its member, and almost
    # none needs the tags (a second SELECT, one more round trip, on each message).
    tags: Mapped[list[MemberTag]] = relationship(cascade="all, delete-orphan", lazy="raise",
                                                 order_by="MemberTag.tag")

    @property
    def tag_names(self) -> list[str]:
        return [t.tag for t in self.tags]


class MemberIdentity(Base):
    """A member's id on a channel other than WeCom (whose ids are members' userids): one per member
    and channel, and one member per id. A new channel needs no new column, only rows."""

    __tablename__ = "member_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"), UniqueConstraint("member_id", "channel"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberTag(Base):
    """Free-form groups for targeting broadcasts (`tag:NAME`), from import or WeCom tags."""

    __tablename__ = "member_tags"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


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


class BindingCode(Base):
    """A one-time code that binds a member's id on another channel (a WeChat openid) to them (store/bindings.py)."""

    __tablename__ = "binding_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    # Issued by an admin for someone outside WeCom: once used, pushes go to the channel it was used on.
    # (The column's name is from when WeChat was the only other channel.)
    push_there: Mapped[bool] = mapped_column("push_to_wechat", Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by: Mapped[str | None] = mapped_column(String(64))  # the channel id (an openid) that used it
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TierChange(Base):
    """Append-only: every change of a partner's tier, with the figures that decided it."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    old_tier: Mapped[str] = mapped_column(String(16))
    new_tier: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
