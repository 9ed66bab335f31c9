"""Log lines that can be followed through the system: each carries the id of the request or the
inbox message it belongs to, as text or as one JSON object per line ([log] format = "json")."""
from __future__ import annotations

import contextvars
import json
import logging
import random
import secrets
from typing import Any

from aiohttp import web

# "-" outside any request or message (start-up, periodic jobs).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_VALID = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                                 "request_id": getattr(record, "request_id", "-"), "message": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str, form: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(JsonFormatter() if form == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)


# Request ids only tell log lines apart, they guard nothing: drawn from a generator seeded once per
# process instead of os.urandom per request (a system call on every redirect).
_ids = random.Random(secrets.randbits(128))


@web.middleware
async def request_ids(request: web.Request, handler: Any) -> web.StreamResponse:
    """Take the proxy's X-Request-Id when it is sane, else make one; echo it in the response."""
    given = request.headers.get("X-Request-Id")
    request_id = given if given and len(given) <= 64 and set(given) <= _VALID else f"{_ids.getrandbits(48):012x}"
    token = REQUEST_ID.set(request_id)
    try:
        response = await handler(request)
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        REQUEST_ID.reset(token)
