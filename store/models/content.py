"""The content library: articles, files, images, video links and talk scripts partners take their own
copy of (DESIGN §11). A copy is a tracked link and a share that name the item (`content_id`)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, UTCDateTime, utcnow

CONTENT_KINDS = ("link", "file", "image", "video", "script")
CONTENT_STATUSES = ("draft", "published", "retired")


class ContentItem(Base):
    """One piece of content. `audience` is written like broadcast targets (`all`, `partner:"X"`,
    `region:Y`, `tag:Z`, `user:ID`) and matched the same way."""

    __tablename__ = "content_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(String(2000), default="")
    # A talk script's text, with {姓名} {公司} {链接} (or {name} {company} {link}) filled per member.
    body: Mapped[str] = mapped_column(Text, default="")
    audience: Mapped[str] = mapped_column(String(500), default="all")
    status: Mapped[str] = mapped_column(String(16), default="published", index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A file item behind the landing form: the download follows a valid sign-up (a lead magnet).
    gated: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ContentTag(Base):
    __tablename__ = "content_tags"

    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(20), primary_key=True, index=True)


class ContentAttachment(Base):
    """Content offered on a task's card (`attach TASK CONTENT`)."""

    __tablename__ = "content_attachments"
    __table_args__ = (UniqueConstraint("task_id", "content_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContentForward(Base):
    """A member's copy sent to their WeCom customers as a customer mass message (`forward N`), and
    where allowed a Moments (朋友圈) task. Recorded first, keyed by the chat message (`inbox_id`: one
    chat message makes at most one forward), then created in WeCom once after the commit
    (`status` pending → sending → created or failed; a row left `sending` is never sent again).
    `reachable`: customers it could reach when asked; `reached`: how many it did once the member
    confirmed it (read back by a periodic job; null until then)."""

    __tablename__ = "content_forwards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    inbox_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="created", server_default="created", index=True)
    # What goes to WeCom: the text and the tracked link's card.
    text: Mapped[str] = mapped_column(Text, default="", server_default="")
    title: Mapped[str] = mapped_column(String(64), default="", server_default="")
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    url: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    msgid: Mapped[str | None] = mapped_column(String(64), unique=True)
    reachable: Mapped[int] = mapped_column(Integer)
    reached: Mapped[int | None] = mapped_column(Integer)
    # The Moments task: wanted (config and permission), WeCom's jobid, then its moment_id and whether
    # the member published it (null until known).
    moment: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    moment_jobid: Mapped[str | None] = mapped_column(String(64))
    moment_id: Mapped[str | None] = mapped_column(String(64))
    moment_published: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ContentFile(Base):
    """A file or image item's bytes, in the database so every instance can serve and stamp them (≤ 20 MB,
    WeCom's file limit). Its own table: listing items never loads the bytes."""

    __tablename__ = "content_files"

    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingUpload(Base):
    """The image or file a marketer (or admin) last sent to the bot in WeCom, waiting for `keep title |
    tags`: one per member, the newest wins. WeCom keeps the media 3 days; so does this row's offer."""

    __tablename__ = "pending_uploads"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    media_id: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(16))  # "image" or "file"
    filename: Mapped[str] = mapped_column(String(255), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
