"""What a callback checks before it does any real work, for WeCom and WeChat alike.

Anyone can POST to a callback URL, so everything an unsigned request can make us do must be cheap:
the query is checked before the body is read, the body is read only up to a limit that fits the
platforms' real messages, and the signature is checked on the `Encrypt` text, found without an XML
parser, before anything is parsed or decrypted. (Parsing first let 20 unsigned 256 KB callbacks
stall every other request for 1.8 s: an XML parser spends ~200 ms on 256 KB of tiny elements.)
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from store.text import whole_number

# WeCom and WeChat callbacks are a few KB (a text message carries at most 2,048 bytes of content,
# encrypted and base64-encoded: under 4 KB with its envelope). 64 KB leaves room for any event and
# is still cheap to read and check.
CALLBACK_MAX_BYTES = 64 * 1024

# The ciphertext, with or without CDATA around it: base64 only, so nothing in it needs XML rules.
_ENCRYPT = re.compile(rb"<Encrypt>\s*(?:<!\[CDATA\[)?([A-Za-z0-9+/=]+)(?:\]\]>)?\s*</Encrypt>")
_ROOT = re.compile(rb"\s*(?:<\?xml[^>]{0,200}\?>\s*)?<xml>.*</xml>\s*", re.DOTALL)


class CallbackRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_timestamp(timestamp: str, max_skew_seconds: float, now: float | None = None) -> None:
    seconds = whole_number(timestamp, 12)
    if seconds is None:
        raise CallbackRejected(400, "timestamp is not a number")
    skew = abs((time.time() if now is None else now) - seconds)
    if skew > max_skew_seconds:
        raise CallbackRejected(403, f"timestamp {skew:.0f} s away from our clock (replay?)")


def ciphertext_of(body: bytes) -> str:
    """The `Encrypt` element of an `<xml>` envelope, without parsing it: the rest of the envelope
    (ToUserName, AgentID) is neither signed nor used, so it is never parsed at all. The last one,
    because WeChat's compatible mode puts it after a plaintext copy whose Content may hold anything."""
    upper = body.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise CallbackRejected(400, "XML with a DTD")
    if not _ROOT.fullmatch(body):
        raise CallbackRejected(400, "no <xml> root element")
    found = _ENCRYPT.findall(body)
    if not found:
        raise CallbackRejected(400, "no Encrypt element")
    return found[-1].decode("ascii")


def refuse_oversized(request: web.Request, limit: int) -> None:
    """413 from the headers alone, before anything else is looked at."""
    if request.content_length is not None and request.content_length > limit:
        raise CallbackRejected(413, f"body of {request.content_length} bytes")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is over `limit` (also when it comes without a Content-Length)."""
    refuse_oversized(request, limit)
    body = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        body += chunk
        if len(body) > limit:
            raise CallbackRejected(413, f"body over {limit} bytes")
    return bytes(body)


def ascii_int(text: object) -> int | None:
    """A whole number written in ASCII digits, else None (a CreateTime of "¹" is not a time)."""
    return whole_number(str(text or ""), 18)


def url_verification(codec: Any, channel: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET on a callback URL: the platform checks that it is ours by having us echo what it signed."""

    async def verify(request: web.Request) -> web.Response:
        try:
            echo = codec.verify_url(request.query)
        except CallbackRejected as err:
            logging.getLogger(f"bot.channels.{channel}").warning("%s URL verification refused: %s", channel, err.reason)
            return web.Response(status=err.status, text=err.reason)
        return web.Response(text=echo)

    return verify
