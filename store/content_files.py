"""File and image content (DESIGN §11): what bytes the library keeps (≤ 20 MB, WeCom's file limit; images
PNG or JPEG by their magic bytes; files PDF and the common office types), where (the database, so every
instance can serve and stamp them), and a file item's gate (the landing form before the download)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.content import InvalidContent, check_audience, check_expiry, check_status, check_tags, set_tags
from store.models import ContentFile, ContentItem, Member, utcnow
from store.tasks import check_title
from store.text import clean_text

MAX_BYTES = 20 * 1024 * 1024  # WeCom's limit for a file message
MAX_MB = MAX_BYTES // (1024 * 1024)
MAX_PIXELS = 40_000_000  # a stamped copy of a bigger picture is too slow to draw (and a decompression bomb)
IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": ("image/png", ".png"), b"\xff\xd8\xff": ("image/jpeg", ".jpg")}
_ZIP, _OLE = b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# extension → (the magic its bytes start with, the type it is served as)
FILE_TYPES = {
    ".pdf": (b"%PDF-", "application/pdf"),
    ".docx": (_ZIP, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ".xlsx": (_ZIP, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".pptx": (_ZIP, "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ".doc": (_OLE, "application/msword"),
    ".xls": (_OLE, "application/vnd.ms-excel"),
    ".ppt": (_OLE, "application/vnd.ms-powerpoint"),
}
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


@dataclass(frozen=True)
class CheckedFile:
    filename: str
    content_type: str


def too_big(size: int) -> InvalidContent:
    return InvalidContent("file", f"the file is {size / 1024 / 1024:.1f} MB; at most {MAX_MB} MB (WeCom's file limit)",
                          f"文件大小 {size / 1024 / 1024:.1f} MB，最大 {MAX_MB} MB（企业微信文件上限）")


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header (PNG IHDR; JPEG's first SOF marker), without decoding."""
    if data.startswith(b"\x89PNG"):
        return (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) if len(data) >= 24 else None
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")
        at += 2 + length
    return None


def check_file(kind: str, filename: str, data: bytes) -> CheckedFile:
    """The bytes' type decided by their first bytes (and, for files, the name's extension agreeing):
    what the client says the type is counts for nothing."""
    if len(data) > MAX_BYTES:
        raise too_big(len(data))
    if not data:
        raise InvalidContent("file", "the file is empty", "文件是空的")
    name = _UNSAFE_NAME.sub("_", clean_text(filename)).strip(". ")[-200:] or "file"
    ext = ("." + name.rsplit(".", 1)[1].lower()) if "." in name else ""
    if kind == "image":
        found = next((t for magic, t in IMAGE_TYPES.items() if data.startswith(magic)), None)
        if found is None:
            raise InvalidContent("file", "an image must be PNG or JPEG", "图片须为 PNG 或 JPEG 格式")
        size = _image_size(data)
        if size is None or not all(size) or size[0] * size[1] > MAX_PIXELS:
            raise InvalidContent("file", f"the image's size cannot be read or is over {MAX_PIXELS // 1_000_000} "
                                         "megapixels", f"无法读取图片尺寸，或超过 {MAX_PIXELS // 1_000_000} 百万像素")
        return CheckedFile(name if ext in (".png", ".jpg", ".jpeg") else name + found[1], found[0])
    if kind != "file":
        raise InvalidContent("kind", "kind is file or image here", "类型须为 file（文件）或 image（图片）")
    known = FILE_TYPES.get(ext)
    if known is None or not data.startswith(known[0]):
        shown = ", ".join(e.lstrip(".").upper() for e in FILE_TYPES)
        raise InvalidContent("file", f"a file must be one of {shown} (by its name and its contents)",
                             f"文件须为以下格式之一：{shown}（按文件名和内容判断）")
    return CheckedFile(name, known[1])


async def create_file_content(session: AsyncSession, *, kind: str, title: str, filename: str, data: bytes,
                              creator: Member | None, tags: list[str] = (), audience: str = "all",
                              summary: str = "", status: str = "published", expires_at: datetime | None = None,
                              gated: bool = False) -> ContentItem:
    """A file or image item and its bytes. Only a file may be gated (an image copy is its QR code)."""
    checked = check_file(kind, filename, data)
    if gated and kind != "file":
        raise InvalidContent("gated", "only a file can be behind the sign-up form", "只有文件可以设置留资后下载")
    summary = clean_text(summary)[:500]
    item = ContentItem(kind=kind, title=check_title(title), summary=summary, url="", body="",
                       audience=await check_audience(session, audience), status=check_status(status),
                       expires_at=check_expiry(expires_at, utcnow()), gated=gated,
                       created_by=creator.id if creator else None)
    tags = check_tags(list(tags))
    session.add(item)
    await session.flush()
    session.add(ContentFile(content_id=item.id, filename=checked.filename, content_type=checked.content_type,
                            size=len(data), sha256=hashlib.sha256(data).hexdigest(), data=data))
    await set_tags(session, item, tags)
    return item


@dataclass(frozen=True)
class FileInfo:
    filename: str
    content_type: str
    size: int
    sha256: str


async def file_info(session: AsyncSession, content_id: int) -> FileInfo | None:
    """What is known of the bytes, without loading them."""
    row = (await session.execute(select(ContentFile.filename, ContentFile.content_type, ContentFile.size,
                                        ContentFile.sha256).where(ContentFile.content_id == content_id))).first()
    return FileInfo(*row) if row else None


async def file_bytes(session: AsyncSession, content_id: int) -> bytes | None:
    return await session.scalar(select(ContentFile.data).where(ContentFile.content_id == content_id))


async def live_file(session: AsyncSession, content_id: int) -> tuple[FileInfo, bytes] | None:
    """A published, unexpired item's file and bytes; None once it is retired or expired (or has none)."""
    item = await session.get(ContentItem, content_id)
    if item is None or item.status != "published" or (item.expires_at is not None and item.expires_at <= utcnow()):
        return None
    row = (await session.execute(select(ContentFile.filename, ContentFile.content_type, ContentFile.size,
                                        ContentFile.sha256, ContentFile.data)
                                 .where(ContentFile.content_id == content_id))).first()
    return (FileInfo(*row[:4]), row[4]) if row else None
