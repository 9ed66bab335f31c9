"""Log lines that can be followed through the system: each carries the id of the request or the
inbox message it belongs to, as text or as one JSON object per line ([log] format = "json")."""
from __future__ import annotations

import contextvars
import json
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

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


# A database or Redis that does not answer (down, restarting, every pooled connection busy): the
# request may succeed in a moment, so it is answered 503, not with aiohttp's bare 500.
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout, RedisConnectionError, RedisTimeoutError,
               ConnectionError, TimeoutError)


def request_ids(unavailable: Callable[[], web.StreamResponse]) -> Any:
    """The middleware every request passes: it takes the proxy's X-Request-Id when it is sane, else
    makes one, and echoes it in the response; a request that finds the database or Redis away gets
    `unavailable()` (a friendly 503 page) and one log line. One middleware for both: each costs the
    hot redirect a wrapper call."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get("X-Request-Id")
        request_id = given if given and len(given) <= 64 and set(given) <= _VALID else f"{_ids.getrandbits(48):012x}"
        token = REQUEST_ID.set(request_id)
        try:
            try:
                response = await handler(request)
            except UNAVAILABLE as err:
                logging.getLogger("bot.web").warning("%s %s: the database or Redis did not answer (%s); answering 503",
                                                     request.method, request.path, type(err).__name__)
                response = unavailable()
            response.headers["X-Request-Id"] = request_id
            return response
        finally:
            REQUEST_ID.reset(token)

    return middleware
