"""GET /d/<code>: a member's tracked download page for a file item (DESIGN §11). It counts a click like
/t/<code> and answers with the file. A gated file shows the landing form first; a valid submit makes the
lead (the link's member's) and the thank-you page links this same path with a signed, expiring key:
no redirect to anywhere the request names, and no URL anyone could guess."""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.web.landing import LeadForm
from bot.web.links import LinkCache, Visitors, count_click, live_target, page
from handlers import pages
from store import content_files
from store.db import Database
from store.links import LinkTarget

KEY_SECONDS = 3600  # how long the download key of a submitted form works


def download_key(secret: bytes, code: str, now: float) -> str:
    expires = int(now) + KEY_SECONDS
    return f"{expires}.{hmac.new(secret, f'download|{code}|{expires}'.encode(), hashlib.sha256).hexdigest()[:32]}"


def key_is_valid(secret: bytes, code: str, key: str, now: float) -> bool:
    expires, _, mac = key.partition(".")
    if not expires.isdigit() or int(expires) < now:
        return False
    good = hmac.new(secret, f"download|{code}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]
    return hmac.compare_digest(good.encode(), mac.encode())


async def stored_bytes(db: Database, content_id: int) -> bytes | None:
    """A content item's stored bytes (the senders stamp images from these)."""
    async with db.session() as session:
        return await content_files.file_bytes(session, content_id)


def attachment(filename: str) -> str:
    """Content-Disposition for any name: an ASCII fallback and the UTF-8 name (RFC 6266 / 5987)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def download_routes(links: LinkCache, visitors: Visitors, form: LeadForm, db_of: Any, recorder_of: Any,
                    secret: bytes, clock: Any = time.time) -> list[web.RouteDef]:
    async def file_target(request: web.Request) -> LinkTarget | web.Response:
        target = await live_target(links, request)
        if not isinstance(target, web.Response) and target.content_kind != "file":
            return page(404, pages.LINK_NOT_FOUND)
        return target

    async def serve(request: web.Request, target: LinkTarget, counted: bool) -> web.StreamResponse:
        assert target.content_id is not None
        async with db_of(request).session() as session:
            # Read now, not from the link cache: a file retired a second ago is no longer served.
            found = await content_files.live_file(session, target.content_id)
        if found is None:
            return page(410, pages.CAMPAIGN_ENDED)
        info, data = found
        response = web.Response(body=data, content_type=info.content_type, headers={
            "Content-Disposition": attachment(info.filename), "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store"})
        if counted:
            count_click(request, target.link_id, response, visitors, recorder_of(request))
        return response

    async def get(request: web.Request) -> web.StreamResponse:
        target = await file_target(request)
        if isinstance(target, web.Response):
            return target
        if not target.gated:
            return await serve(request, target, counted=True)
        key = request.query.get("k", "")
        if key:  # the thank-you page's link: the visit was counted when the form was shown
            if not key_is_valid(secret, request.match_info["code"], key, clock()):
                return page(403, pages.DOWNLOAD_EXPIRED)
            return await serve(request, target, counted=False)
        response = form.show(request, target)
        count_click(request, target.link_id, response, visitors, recorder_of(request))
        return response

    async def submit(request: web.Request) -> web.StreamResponse:
        target = await file_target(request)
        if isinstance(target, web.Response):
            return target
        if not target.gated:
            return page(404, pages.LINK_NOT_FOUND)
        code = request.match_info["code"]
        return await form.submit(request, target, download=f"/d/{code}?k={download_key(secret, code, clock())}")

    return [web.get("/d/{code:.*}", get), web.post("/d/{code:.*}", submit)]
