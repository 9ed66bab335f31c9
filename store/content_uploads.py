"""Content added in chat from an upload (DESIGN §2 `keep`): the image or file a marketer last sent to
the bot waits as their pending upload (one per member, the newest wins) until `keep title | tags`
makes it an item through store/content_files.py's rules. WeCom keeps such media 3 days, and so does
the offer."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Member, PendingUpload, utcnow
from store.text import clean_text

MEDIA_LIFETIME = timedelta(days=3)  # WeCom's temporary media live 3 days
MEDIA_TYPES = ("image", "file")
# The kind of item each media type becomes.
ITEM_KIND = {"image": "image", "file": "file"}


@dataclass(frozen=True)
class Pending:
    media_id: str
    media_type: str
    filename: str
    received_at: datetime
    expired: bool

    @property
    def kind(self) -> str:
        return ITEM_KIND[self.media_type]


async def remember_upload(session: AsyncSession, member: Member, media_id: str, media_type: str,
                          filename: str = "", now: datetime | None = None) -> None:
    """The member's pending upload is now this one (an earlier one is forgotten)."""
    if media_type not in MEDIA_TYPES:
        raise ValueError(f"media type {media_type!r} is not one of {MEDIA_TYPES}")
    row = await session.get(PendingUpload, member.id)
    if row is None:
        row = PendingUpload(member_id=member.id)
        session.add(row)
    row.media_id, row.media_type = media_id[:255], media_type
    row.filename = clean_text(filename)[:255]
    row.received_at = now or utcnow()
    await session.flush()


async def pending_upload(session: AsyncSession, member: Member, now: datetime | None = None) -> Pending | None:
    """The member's pending upload, saying whether WeCom has dropped its media by now; None if none."""
    row = await session.get(PendingUpload, member.id)
    if row is None:
        return None
    expired = row.received_at + MEDIA_LIFETIME <= (now or utcnow())
    return Pending(row.media_id, row.media_type, row.filename, row.received_at, expired)


async def forget_upload(session: AsyncSession, member: Member) -> None:
    await session.execute(delete(PendingUpload).where(PendingUpload.member_id == member.id))
