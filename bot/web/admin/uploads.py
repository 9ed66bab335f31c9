"""Reading a multipart upload for the admin API (a file or image content item): streamed, so the app's
small body limit does not apply and a file over WeCom's 20 MB is refused (413) before it is all read."""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from bot.web.admin.common import Refused
from store.content_files import MAX_BYTES, too_big

UPLOAD_FIELDS = ("kind", "title", "summary", "tags", "audience", "status", "expires_at", "gated")
FIELD_MAX = 4096
# A multipart body carries more than the file: boundaries, headers and the other fields.
FORM_SLACK = 64 * 1024
TRUE, FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


async def read_upload(request: web.Request) -> tuple[dict[str, Any], str, bytes]:
    """(fields, the file's name, its bytes); Refused with the reason for anything else."""
    if request.content_length is not None and request.content_length > MAX_BYTES + FORM_SLACK:
        raise Refused(413, too_big(request.content_length).en, "file")
    try:
        reader = await request.multipart()
        fields: dict[str, Any] = {}
        filename, data = None, bytearray()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name not in (*UPLOAD_FIELDS, "file"):
                raise Refused(400, f"unknown part {getattr(part, 'name', '')!r}; known: file, "
                                   + ", ".join(UPLOAD_FIELDS), getattr(part, "name", None))
            if part.name == "file":
                # Some clients (aiohttp's FormData, curl with some options) percent-encode a UTF-8 name.
                filename = unquote(part.filename or "", errors="strict") if "%" in (part.filename or "") \
                    else part.filename or ""
                while chunk := await part.read_chunk(256 * 1024):
                    data += chunk
                    if len(data) > MAX_BYTES:
                        raise Refused(413, too_big(len(data) + await _rest(part)).en, "file")
                continue
            value = bytearray()
            while chunk := await part.read_chunk(FIELD_MAX):
                value += chunk
                if len(value) > FIELD_MAX:
                    raise Refused(400, f"{part.name} is longer than {FIELD_MAX} bytes", part.name)
            fields[part.name] = value.decode("utf-8", errors="replace").strip()
    except (ValueError, AssertionError, UnicodeDecodeError) as problem:
        raise Refused(400, f"the body is not a readable multipart/form-data upload ({problem})") from None
    if filename is None:
        raise Refused(422, "the upload has no `file` part", "file")
    fields["tags"] = [t.strip() for t in fields.get("tags", "").replace("，", ",").split(",") if t.strip()]
    gated = fields.get("gated", "").lower()
    if gated not in (*TRUE, *FALSE):
        raise Refused(400, "gated must be true or false", "gated")
    fields["gated"] = gated in TRUE
    return fields, filename, bytes(data)


async def _rest(part: Any, limit: int = 4 * MAX_BYTES) -> int:
    """How many bytes more the file had (read and dropped, to say its size); at most `limit` are read."""
    seen = 0
    while seen < limit and (chunk := await part.read_chunk(1024 * 1024)):
        seen += len(chunk)
    return seen
