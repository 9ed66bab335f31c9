"""GET/POST /l/<code>: the task's landing form. A lead is attributed to the member whose link it is,
the visitor's earlier clicks become its touches, and the sharer is told in chat."""
from __future__ import annotations

import hmac
import logging
import secrets
from html import escape
from string import Template
from typing import Any

from aiohttp import web

from bot.config import ASSETS, Config
from bot.web.lead_notices import LeadNotices, notice_key
from bot.web.links import LinkCache, Visitors, live_target, page
from handlers import notices, pages
from handlers.replies import reply_to_payload
from store import leads as lead_store
from store.links import LinkTarget
from store import quota as quota_store
from store.members import member_by_id
from store.outbox_queue import queue_messages
from store.pool_rules import rule_book

log = logging.getLogger(__name__)

PAGE = ASSETS / "pages" / "landing.html"
CSRF_COOKIE = "pb_csrf"
FORM_FIELDS = ("name", "company", "phone", "region", "industry")
SUBMITS_PER_WINDOW, SUBMIT_WINDOW_SECONDS = 5, 600
MAX_FORM_BYTES = 8192


class LeadForm:
    """The sign-up form of a tracked link: shown, then a valid submit makes a lead for the link's member.
    /l/<code> is one; a gated file's download page (bot/web/downloads.py) is another."""

    def __init__(self, visitors: Visitors, config: Config, db_of: Any, outbox_of: Any, shared_of: Any) -> None:
        self.template = Template(PAGE.read_text(encoding="utf-8"))
        self.visitors, self.config, self.db_of, self.outbox_of, self.shared_of = \
            visitors, config, db_of, outbox_of, shared_of
        self.notices = LeadNotices(config.wecom)

    def render(self, status: int, title: str, token: str, values: dict[str, str], problems: dict[str, str],
               done: bool = False, download: str = "") -> web.Response:
        fields = {f"v_{k}": escape(values.get(k, "")) for k in FORM_FIELDS}
        errors = {f"e_{k}": escape(problems.get(k, "")) for k in (*FORM_FIELDS, "consent")}
        link = f'<a class="download" id="download" href="{escape(download)}">{escape(pages.DOWNLOAD_NOW)}</a>' \
            if done and download else ""
        # A form refused for another field keeps the visitor's tick (values["consent"] == "yes").
        consent = "checked" if values.get("consent") == "yes" else ""
        body = self.template.substitute(title=escape(title), csrf=escape(token), form_hidden="hidden" if done else "",
                                        done_hidden="" if done else "hidden", download=link,
                                        consent_checked=consent, **fields, **errors)
        return web.Response(status=status, text=body, content_type="text/html",
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                                "form-action 'self'; base-uri 'none'"})

    async def too_many(self, request: web.Request, who: str) -> bool:
        count = await self.shared_of(request).count_in_window(f"landing:{who}", SUBMIT_WINDOW_SECONDS)
        return count > SUBMITS_PER_WINDOW

    @staticmethod
    def _cookie_path(request: web.Request) -> str:
        return "/" + request.path.lstrip("/").split("/", 1)[0] + "/"  # /l/ or /d/: the form posts to itself

    def show(self, request: web.Request, target: LinkTarget) -> web.Response:
        token = secrets.token_urlsafe(24)
        response = self.render(200, target.task_title, token, {}, {})
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Strict", path=self._cookie_path(request),
                            max_age=3600, secure=self.visitors.secure_cookies)
        self.visitors.remember(response, self.visitors.visitor_id(request, self.visitors.ip_hash(request)))
        return response

    async def submit(self, request: web.Request, target: LinkTarget, download: str = "") -> web.Response:
        """The lead from a valid form (the thank-you page then links `download`, if given), or why not."""
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            return page(413, pages.FORM_TOO_LONG)
        try:
            form = await request.post()
        except ValueError:
            return page(400, pages.FORM_UNREADABLE)
        cookie_token = request.cookies.get(CSRF_COOKIE, "")
        form_token = str(form.get("csrf", ""))
        if not cookie_token or not hmac.compare_digest(cookie_token.encode(), form_token.encode()):
            log.warning("landing form refused: CSRF token missing or wrong (link %d)", target.link_id)
            return page(403, pages.FORM_EXPIRED)
        values = {k: str(form.get(k, ""))[:200] for k in FORM_FIELDS}
        consent = form.get("consent") == "yes"
        lead_form, problems = lead_store.validate_form(values, consent=consent)
        if lead_form is None:
            return self.render(422, target.task_title, cookie_token, {**values, "consent": "yes" if consent else ""},
                               problems)
        # Only accepted submissions count, per address and link: typos and shared carrier IPs
        # (common on mobile networks) must not lock real people out.
        ip_hash = self.visitors.ip_hash(request)
        if await self.too_many(request, f"{ip_hash}:{target.link_id}"):
            return page(429, pages.FORM_TOO_OFTEN)
        visitor = self.visitors.visitor_id(request, ip_hash)
        notice: str | None = None
        async with self.db_of(request).session() as session:
            sharer = await member_by_id(session, target.member_id)
            owner = sharer if sharer is not None and sharer.active else None  # one who left: to the pool
            lead = await lead_store.create_from_form(
                session, lead_form, sharer=owner, task_id=target.task_id, link_id=target.link_id,
                channel=target.channel, visitor_id=visitor, book=await rule_book(session, self.config.pool_rules))
            # None: the same person for the same task today, already stored (a double tap, a re-send).
            if lead is not None:
                log.info("lead %d from link %d (phone %s)", lead.id, target.link_id, lead_store.mask_phone(lead.phone))
            if lead is not None and owner is not None:
                note = notices.new_lead(lead, target.task_id, target.channel, target.content_id)
                notice = notice_key(lead.id)
                await queue_messages(session, task_id=None, purpose=quota_store.LEAD_NOTICE,
                                     rows=[(owner.userid, notice, reply_to_payload(note))], status=quota_store.DEFERRED)
        if notice is not None:  # within the quota, after the commit (bot/web/lead_notices.py)
            self.notices.committed(notice, self.db_of(request), self.outbox_of(request))
        response = self.render(200, target.task_title, cookie_token, {}, {}, done=True, download=download)
        self.visitors.remember(response, visitor)
        return response


def landing_routes(form: LeadForm, links: LinkCache) -> list[web.RouteDef]:
    async def show(request: web.Request) -> web.StreamResponse:
        target = await live_target(links, request)
        return target if isinstance(target, web.Response) else form.show(request, target)

    async def submit(request: web.Request) -> web.StreamResponse:
        target = await live_target(links, request)
        return target if isinstance(target, web.Response) else await form.submit(request, target)

    return [web.get("/l/{code:.*}", show), web.post("/l/{code:.*}", submit)]
