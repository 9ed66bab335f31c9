"""The content library through the admin API: the same rules as newcontent / newscript in chat
(store/content.py decides; this module only turns JSON into calls and answers)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from bot.config import Config
from store import content as content_store
from store.models import ContentItem

CREATE_FIELDS = ("kind", "title", "url", "body", "summary", "tags", "audience", "status", "expires_at")
EDIT_FIELDS = ("title", "tags", "audience", "status", "expires_at")


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": message, **({"field": field} if field else {})}, status=status)


class _Bad(Exception):
    """Leave the unit of work without committing anything, answering with this error."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.field = status, field

    def response(self) -> web.Response:
        return _error(self.status, str(self), self.field)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


async def content_json(session: Any, item: ContentItem) -> dict[str, Any]:
    return {"id": item.id, "kind": item.kind, "title": item.title, "summary": item.summary, "url": item.url,
            "body": item.body, "tags": (await content_store.tags_of(session, [item.id]))[item.id],
            "audience": item.audience, "status": item.status, "expires_at": _iso(item.expires_at),
            "created_at": _iso(item.created_at), "copies": await content_store.copies_taken(session, item.id)}


def _check(body: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """Shapes only; the store checks the values."""
    if not isinstance(body, dict) or not body:
        raise _Bad(400, "the body must be a JSON object with some of: " + ", ".join(fields))
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise _Bad(400, f"unknown field(s): {', '.join(unknown)}; known: {', '.join(fields)}", unknown[0])
    for key, value in body.items():
        if key == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise _Bad(400, "tags must be a list of strings", "tags")
        elif key == "expires_at":
            if not isinstance(value, (str, type(None))):
                raise _Bad(400, "expires_at must be ISO 8601 with a zone, or null", key)
        elif not isinstance(value, str):
            raise _Bad(400, f"{key} must be a string", key)
    if "expires_at" in body:
        body["expires_at"] = _when(body["expires_at"])
    return body


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(422, "expires_at must be ISO 8601, e.g. 2026-12-31T18:00:00+08:00", "expires_at") from None
    if parsed.tzinfo is None:
        raise _Bad(422, "give expires_at with its time zone, e.g. 2026-12-31T18:00:00+08:00", "expires_at")
    return parsed


def content_routes(config: Config, db_of: Any) -> list[web.RouteDef]:
    async def body_of(request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
        try:
            return _check(await request.json(), fields)
        except (ValueError, UnicodeDecodeError):
            raise _Bad(400, "the body must be JSON") from None

    async def create(request: web.Request) -> web.Response:
        try:
            body = await body_of(request, CREATE_FIELDS)
            if body.get("kind") in ("file", "image"):
                raise _Bad(422, "files and images cannot be added yet; kinds: link, video, script", "kind")
            if body.get("kind", "link") not in ("link", "video", "script"):
                raise _Bad(422, "kind is one of link, video, script", "kind")
            async with db_of(request).session() as session:
                item = await content_store.create_content(
                    session, title=body.get("title", ""), url=body.get("url", ""), body=body.get("body", ""),
                    kind=body.get("kind"), tags=body.get("tags", []), audience=body.get("audience", "all"),
                    summary=body.get("summary", ""), status=body.get("status", "published"),
                    expires_at=body.get("expires_at"), creator=None)
                return web.json_response(await content_json(session, item), status=201)
        except _Bad as bad:
            return bad.response()
        except content_store.InvalidContent as problem:
            return _error(422, problem.en, problem.field)

    async def list_(request: web.Request) -> web.Response:
        async with db_of(request).session() as session:
            items = await content_store.recent_content(session, 200)
            return web.json_response({"content": [await content_json(session, i) for i in items]})

    async def edit(request: web.Request) -> web.Response:
        raw = request.match_info["content_id"]
        content_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None
        try:
            body = await body_of(request, EDIT_FIELDS)
            async with db_of(request).session() as session:
                item = await content_store.get_content(session, content_id) if content_id else None
                if item is None:
                    raise _Bad(404, "no such content")
                await content_store.update_content(
                    session, item, title=body.get("title"), tags=body.get("tags"), audience=body.get("audience"),
                    status=body.get("status"), expires_at=body.get("expires_at"),
                    clear_expiry="expires_at" in body and body["expires_at"] is None)
                return web.json_response(await content_json(session, item))
        except _Bad as bad:
            return bad.response()
        except content_store.InvalidContent as problem:
            return _error(422, problem.en, problem.field)

    return [web.get("/api/content", list_), web.post("/api/content", create),
            web.patch("/api/content/{content_id}", edit)]
