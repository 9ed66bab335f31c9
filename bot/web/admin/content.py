"""The content library through the admin API: the same rules as newcontent / newscript in chat
(store/content.py decides; this module only turns JSON into calls and answers)."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.config import Config
from bot.web.admin.common import Refused, aware_time, iso, json_body, path_id
from bot.web.admin.uploads import read_upload
from store import content as content_store
from store import content_files
from store.models import ContentItem

CREATE_FIELDS = ("kind", "title", "url", "body", "summary", "tags", "audience", "status", "expires_at")
EDIT_FIELDS = ("title", "tags", "audience", "status", "expires_at", "gated")


async def content_json(session: Any, item: ContentItem) -> dict[str, Any]:
    return {"id": item.id, "kind": item.kind, "title": item.title, "summary": item.summary, "url": item.url,
            "body": item.body, "tags": (await content_store.tags_of(session, [item.id]))[item.id],
            "audience": item.audience, "status": item.status, "expires_at": iso(item.expires_at),
            "created_at": iso(item.created_at), "copies": await content_store.copies_taken(session, item.id),
            "gated": item.gated, "file": ({"filename": f.filename, "content_type": f.content_type, "size": f.size}
                                          if (f := await content_files.file_info(session, item.id)) else None)}


def _check(body: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """Shapes only; the store checks the values."""
    if not isinstance(body, dict) or not body:
        raise Refused(400, "the body must be a JSON object with some of: " + ", ".join(fields))
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise Refused(400, f"unknown field(s): {', '.join(unknown)}; known: {', '.join(fields)}", unknown[0])
    for key, value in body.items():
        if key == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise Refused(400, "tags must be a list of strings", "tags")
        elif key == "gated":
            if not isinstance(value, bool):
                raise Refused(400, "gated must be true or false", key)
        elif key == "expires_at":
            if not isinstance(value, (str, type(None))):
                raise Refused(400, "expires_at must be ISO 8601 with a zone, or null", key)
        elif not isinstance(value, str):
            raise Refused(400, f"{key} must be a string", key)
    if "expires_at" in body:
        body["expires_at"] = aware_time(body["expires_at"], "expires_at")
    return body


def content_routes(config: Config, db_of: Any) -> list[web.RouteDef]:
    async def body_of(request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
        return _check(await json_body(request), fields)

    async def create(request: web.Request) -> web.Response:
        if request.content_type == "multipart/form-data":
            return await upload(request)
        body = await body_of(request, CREATE_FIELDS)
        if body.get("kind") in ("file", "image"):
            raise Refused(422, "a file or image is uploaded as multipart/form-data with a `file` part", "kind")
        if body.get("kind", "link") not in ("link", "video", "script"):
            raise Refused(422, "kind is one of link, video, script", "kind")
        async with db_of(request).session() as session:
            item = await content_store.create_content(
                session, title=body.get("title", ""), url=body.get("url", ""), body=body.get("body", ""),
                kind=body.get("kind"), tags=body.get("tags", []), audience=body.get("audience", "all"),
                summary=body.get("summary", ""), status=body.get("status", "published"),
                expires_at=body.get("expires_at"), creator=None)
            return web.json_response(await content_json(session, item), status=201)

    async def upload(request: web.Request) -> web.Response:
        fields, filename, data = await read_upload(request)
        async with db_of(request).session() as session:
            item = await content_files.create_file_content(
                session, kind=fields.get("kind", ""), title=fields.get("title", ""), filename=filename, data=data,
                tags=fields.get("tags", []), audience=fields.get("audience") or "all", summary=fields.get("summary", ""),
                status=fields.get("status") or "published", expires_at=aware_time(fields.get("expires_at"), "expires_at"),
                gated=fields.get("gated", False), creator=None)
            return web.json_response(await content_json(session, item), status=201)

    async def list_(request: web.Request) -> web.Response:
        async with db_of(request).session() as session:
            items = await content_store.recent_content(session, 200)
            return web.json_response({"content": [await content_json(session, i) for i in items]})

    async def edit(request: web.Request) -> web.Response:
        content_id = path_id(request.match_info["content_id"])
        body = await body_of(request, EDIT_FIELDS)
        async with db_of(request).session() as session:
            item = await content_store.get_content(session, content_id) if content_id else None
            if item is None:
                raise Refused(404, "no such content")
            await content_store.update_content(
                session, item, title=body.get("title"), tags=body.get("tags"), audience=body.get("audience"),
                status=body.get("status"), expires_at=body.get("expires_at"), gated=body.get("gated"),
                clear_expiry="expires_at" in body and body["expires_at"] is None)
            return web.json_response(await content_json(session, item))

    return [web.get("/api/content", list_), web.post("/api/content", create),
            web.patch("/api/content/{content_id}", edit)]
