"""What every admin route shares: JSON errors, refusing from anywhere inside a route (the token
middleware answers, and the unit of work is left without committing), the body, ids and times."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from store.text import whole_number


def error(status: int, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": message, **({"field": field} if field else {})}, status=status)


class Refused(Exception):
    """Answer the request with this error (bot/web/admin/api.py's middleware does)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.response = error(status, message, field)


async def json_body(request: web.Request) -> Any:
    """The request's JSON (any shape: each route checks its own); Refused with a 400 if it is not JSON."""
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body must be JSON") from None


def path_id(raw: str) -> int | None:
    return whole_number(raw, 9)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def aware_time(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time with its zone (None for empty); Refused (422) otherwise."""
    if not value:
        return None
    example = "e.g. 2026-12-31T18:00:00+08:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(422, f"{field} must be ISO 8601, {example}", field) from None
    if parsed.tzinfo is None:
        raise Refused(422, f"give {field} with its time zone, {example}", field)
    return parsed
