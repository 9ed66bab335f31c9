"""GET /t/<code>: the tracked redirect (DESIGN §3 Click). Answers first, records the click after.

Destinations come only from stored tasks, never from the request: no open redirect.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
from datetime import datetime, timezone
from functools import lru_cache
from html import escape
from string import Template
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web
from crawlerdetect import CrawlerDetect
from multidict import CIMultiDict

from bot.config import ASSETS, Config
from bot.metrics import REDIRECTS
from handlers import pages
from handlers.pages import PageText
from store import links as link_store

log = logging.getLogger(__name__)

CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,16}$")
VISITOR_COOKIE = "pb_vid"
# "<visitor id>.<day it was signed>.<HMAC-SHA256 of both, 128 bits in hex>": only this server hands
# out visitor ids. Cookies from before the day was added ("<id>.<HMAC of the id>") are still believed.
SIGNED_VISITOR = re.compile(r"^([A-Za-z0-9]{16,40})(?:\.([0-9]{1,6}))?\.([0-9a-f]{32})$")
# The visitor cookie in a Cookie header, read without parsing every other cookie there.
VISITOR_IN_HEADER = re.compile(rf"(?:^|;)\s*{VISITOR_COOKIE}=([^;]*)")
VISITOR_COOKIE_DAYS = 365
# A believed cookie is signed again only when it is this old (or in the old form), so a returning
# visitor keeps their id for a year after their last renewal, and most redirects set no cookie.
RENEW_VISITOR_AFTER_DAYS = 30
# Without a valid cookie, one (IP hash, user agent) is one visitor for this long (a UTC day).
FALLBACK_VISITOR_SECONDS = 86400
# A cached link target is dropped when any task or content item changes (checked at most this often,
# across instances: the check reads the database), and after LINK_CACHE_SECONDS in any case.
LINK_CHANGES_CHECK_SECONDS = 1.0
LINK_CACHE_SECONDS = 30.0
_crawlers = CrawlerDetect()

_PAGE = Template((ASSETS / "pages" / "message.html").read_text(encoding="utf-8"))


def page(status: int, words: PageText) -> web.Response:
    """A one-message page: what handlers/pages.py says, in assets/pages/message.html."""
    return web.Response(status=status, text=_PAGE.substitute(title=escape(words.title), text=escape(words.text)),
                        content_type="text/html", headers={"Cache-Control": "no-store"})


def unavailable_page() -> web.Response:
    """What a request that found the database or Redis away is answered (bot.logs.request_ids)."""
    response = page(503, pages.UNAVAILABLE)
    response.headers["Retry-After"] = "5"
    return response


UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign")


@lru_cache(maxsize=4096)  # the same few links are followed again and again
def with_utm(target: str, channel: str, task_id: int | None, content_id: int | None = None) -> str:
    """Add our utm parameters; the target's own query is kept byte for byte (it may be GBK-encoded
    or signed), only its utm parameters of the same names are replaced."""
    parts = urlsplit(target)
    kept = [p for p in parts.query.split("&") if p and p.split("=", 1)[0] not in UTM_KEYS]
    campaign = f"task-{task_id}" if content_id is None else f"content-{content_id}"
    utm = urlencode({"utm_source": "partnerbot", "utm_medium": channel, "utm_campaign": campaign})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join([*kept, utm]), parts.fragment))


@lru_cache(maxsize=4096)  # a few phone and app versions make most of the traffic
def is_crawler(user_agent: str) -> bool:
    return bool(_crawlers.isCrawler(user_agent))


def is_bot(user_agent: str, method: str) -> bool:
    # HEAD requests come from link checkers and preview fetchers, never from a person tapping a link.
    return method == "HEAD" or not user_agent.strip() or is_crawler(user_agent)


class ClientAddress:
    """The visitor's IP: from X-Forwarded-For only when the direct peer is a trusted proxy."""

    def __init__(self, trusted_proxies: str) -> None:
        self.trusted = [ipaddress.ip_network(p.strip(), strict=False) for p in trusted_proxies.split(",") if p.strip()]
        self._is_trusted = lru_cache(maxsize=4096)(self._check)  # parsing an address costs more than a redirect's hash

    def _check(self, address: str) -> bool:
        if not self.trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def of(self, request: web.Request) -> str:
        peer = request.remote or ""
        if not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        for hop in reversed(hops):  # the nearest untrusted hop is the client
            if not self._is_trusted(hop):
                return hop
        return peer


def visitor_secret(config: Config) -> bytes:
    """The key that signs visitor cookies: `[links] visitor_secret`, else derived from the WeCom app's
    secret and AES key (environment-only secrets that `serve` requires, so restarts keep cookies
    valid), else random per process (no WeCom app configured: cookies last until a restart)."""
    if config.links.visitor_secret:
        return config.links.visitor_secret.encode()
    wecom = config.wecom
    if wecom.secret and wecom.encoding_aes_key:
        return hmac.new(f"{wecom.secret}|{wecom.encoding_aes_key}".encode(), b"partnerbot visitor cookie v1",
                        hashlib.sha256).digest()
    log.warning("[links] visitor_secret is not set: visitor cookies will not survive a restart")
    return secrets.token_bytes(32)


def sign_visitor(secret: bytes, visitor: str, day: int | None = None) -> str:
    """The cookie value for `visitor`, signed on `day` (days since 1970, UTC; default today)."""
    signed = f"{visitor}.{int(time.time() // 86400) if day is None else day}"
    return f"{signed}.{_signature(secret, signed)}"


@lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    return hmac.new(secret, digestmod="sha256")


def _signature(secret: bytes, signed: str) -> str:
    # A copy of an HMAC already keyed: OpenSSL 3 sets a key up again in every hmac.digest or
    # hmac.new call, which costs more than the signature (~3.5 vs ~5.5 µs here, timeit).
    keyed = _keyed(secret).copy()
    keyed.update(signed.encode())
    return keyed.hexdigest()[:32]


class Visitors:
    """Who is visiting, without keeping who they are: a salted IP hash and a signed first-party cookie."""

    def __init__(self, salt: bytes, trusted_proxies: str, secret: bytes, clock: Any = time.time,
                 secure_cookies: bool = False) -> None:
        self.salt = salt
        self.secret = secret
        self.clock = clock
        self.addresses = ClientAddress(trusted_proxies)
        # Behind TLS (an https public_base_url) cookies are sent over HTTPS only. Taken from the
        # configured address, not from X-Forwarded-Proto, which any client can send.
        self.secure_cookies = secure_cookies
        # The same phone taps many links: its address's hash is kept (bounded) instead of recomputed.
        self._ip_hashes: dict[str, str] = {}

    def ip_hash(self, request: web.Request) -> str:
        address = self.addresses.of(request)
        hashed = self._ip_hashes.get(address)
        if hashed is None:
            if len(self._ip_hashes) >= 10_000:
                self._ip_hashes.clear()
            hashed = self._ip_hashes[address] = hmac.digest(self.salt, address.encode(), "sha256").hex()
        return hashed

    def visitor(self, request: web.Request, ip_hash: str) -> tuple[str, bool]:
        """(visitor id, whether their cookie needs no renewal). The id in a cookie this server signed
        (from any IP); else one per (IP hash, agent) and day, so a script inventing a new cookie for
        every click is still one visitor."""
        found = VISITOR_IN_HEADER.search(request.headers.get("Cookie", ""))
        signed = SIGNED_VISITOR.match(found[1].strip().strip('"')) if found else None
        today = int(self.clock() // FALLBACK_VISITOR_SECONDS)
        if signed:
            visitor, day, signature = signed.groups()
            if hmac.compare_digest(_signature(self.secret, visitor if day is None else f"{visitor}.{day}"), signature):
                return visitor, day is not None and 0 <= today - int(day) < RENEW_VISITOR_AFTER_DAYS
        return hashlib.sha256(f"{ip_hash}|{request.headers.get('User-Agent', '')}|{today}".encode()).hexdigest()[:32], False

    def visitor_id(self, request: web.Request, ip_hash: str) -> str:
        return self.visitor(request, ip_hash)[0]

    def remember(self, response: web.StreamResponse, visitor: str) -> None:
        cookie = sign_visitor(self.secret, visitor, int(self.clock() // 86400))
        # Written out as response.set_cookie would write it: its cookie objects cost ~25 µs per new
        # visitor, more than the rest of a redirect. The value holds only [A-Za-z0-9.].
        response.headers.add("Set-Cookie", f"{VISITOR_COOKIE}={cookie}; HttpOnly; Max-Age={VISITOR_COOKIE_DAYS * 86400}; "
                                           f"Path=/; SameSite=Lax{'; Secure' if self.secure_cookies else ''}")


class LinkCache:
    """Code → destination, cached per process: a redirect reads the database only for a link not
    seen lately. A task ended or an item retired (on any instance) ends its links within
    LINK_CHANGES_CHECK_SECONDS; an item's expiry ends them on time."""

    def __init__(self, db_of: Any, check_every: float = LINK_CHANGES_CHECK_SECONDS) -> None:
        self.db_of = db_of
        self.check_every = check_every
        self.entries: dict[str, tuple[float, link_store.LinkTarget]] = {}
        self._version: tuple[Any, ...] | None = None
        self._checked = float("-inf")
        self._checking = False
        # Bumped when the entries are dropped: a lookup that read the database before then keeps
        # its answer out of the cache (it may predate the change).
        self._generation = 0

    async def _drop_if_changed(self, request: web.Request) -> None:
        if self._checking or time.monotonic() - self._checked < self.check_every:
            return
        self._checking = True  # one check at a time; other redirects meanwhile use the cache
        try:
            try:
                async with self.db_of(request).session() as session:
                    version = await link_store.targets_version(session)
            except Exception as err:
                # The database is away: cached links keep redirecting until their entries expire,
                # and the next check waits its turn instead of costing every redirect a timeout.
                log.warning("link cache: cannot check for changed links (%s)", type(err).__name__)
                self._checked = time.monotonic()
                return
            self._checked = time.monotonic()
            if version != self._version:
                self._version = version
                self._generation += 1
                self.entries.clear()
        finally:
            self._checking = False

    def cached(self, code: str) -> link_store.LinkTarget | None:
        """The cached target while it is fresh and no change check is due (a redirect's usual case),
        found without awaiting anything; else None: ask lookup()."""
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            return None
        hit = self.entries.get(code)
        return hit[1] if hit is not None and hit[0] > now else None

    async def lookup(self, request: web.Request, code: str) -> link_store.LinkTarget | None:
        if not CODE_PATTERN.match(code):
            return None
        await self._drop_if_changed(request)
        hit = self.entries.get(code)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        generation = self._generation
        async with self.db_of(request).session() as session:
            target = await link_store.resolve(session, code)
        if target is not None and generation == self._generation:
            if len(self.entries) > 50_000:
                self.entries.clear()
            keep = LINK_CACHE_SECONDS
            if target.ends_at is not None and not target.ended:
                keep = min(keep, (target.ends_at - datetime.now(timezone.utc)).total_seconds())
            self.entries[code] = (time.monotonic() + keep, target)
        return target


async def live_target(links: LinkCache, request: web.Request) -> link_store.LinkTarget | web.Response:
    """The link in the path, or the friendly page to answer instead (unknown: 404, ended: 410)."""
    code = request.match_info["code"]
    target = links.cached(code) or await links.lookup(request, code)
    if target is None:
        return page(404, pages.LINK_NOT_FOUND)
    if target.ended:
        return page(410, pages.CAMPAIGN_ENDED)
    return target


def count_click(request: web.Request, link_id: int, response: web.StreamResponse, visitors: Visitors,
                recorder: Any) -> None:
    """Count a visit of a tracked link (after the response: bot/web/clicks.py) and remember the visitor."""
    ip_hash = visitors.ip_hash(request)
    visitor, current = visitors.visitor(request, ip_hash)
    if not current:  # new, forged, old or in the old form: (re)sign it; a current one is left alone
        visitors.remember(response, visitor)
    user_agent = request.headers.get("User-Agent", "")
    recorder.record_soon(link_id, visitor, ip_hash, user_agent, request.headers.get("Referer", ""),
                         is_bot(user_agent, request.method))


def redirect_headers(code: str, target: link_store.LinkTarget) -> CIMultiDict[str]:
    """What /t/<code> answers for a live target, apart from the visitor's cookie."""
    if target.content_kind == "file":  # a file's page is its download page, which counts the click
        return CIMultiDict({"Location": f"/d/{code}", "Cache-Control": "no-store"})
    # A talk script or an image has no page of its own: its link opens the sharer's sign-up form.
    return CIMultiDict({
        "Location": with_utm(target.target_url, target.channel, target.task_id, target.content_id)
        if target.target_url else f"/l/{code}",
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer-when-downgrade"})


_REDIRECTED = REDIRECTS.labels("redirected")  # looked up once: labels() costs a dict lookup under a lock


def redirect_routes(links: LinkCache, recorder_of: Any, visitors: Visitors) -> list[web.RouteDef]:
    # crawlerdetect compiles its large pattern on first use (~0.5 s): here, not in the first visitor's redirect.
    _crawlers.isCrawler("partnerbot")
    # Per code, the headers its redirect answers with, made once for the target they were made from
    # (a target read again after a change is a new object, so they are made again).
    answers: dict[str, tuple[link_store.LinkTarget, CIMultiDict[str]]] = {}

    async def follow(request: web.Request) -> web.StreamResponse:
        target = await live_target(links, request)
        if isinstance(target, web.Response):
            REDIRECTS.labels("not_found" if target.status == 404 else "ended").inc()
            return target
        code = request.match_info["code"]
        answer = answers.get(code)
        if answer is None or answer[0] is not target:
            if len(answers) > 50_000:
                answers.clear()
            answer = answers[code] = (target, redirect_headers(code, target))
        response = web.Response(status=302, headers=answer[1])
        if target.content_kind != "file":
            _REDIRECTED.inc()
            count_click(request, target.link_id, response, visitors, recorder_of(request))
        return response

    # Any path under /t/ lands here (a malformed one gets the friendly 404); HEAD is answered too.
    return [web.get("/t/{code:.*}", follow)]
