"""WeCom's customer contact (客户联系) in the simulator: each member's customers, customer mass messages
and Moments tasks, with WeCom's shapes and error codes.

- externalcontact/get_follow_user_list: the members in the customer-contact scope (使用范围).
- externalcontact/list: a member's customers (external_userid). A member outside the customer-contact
  scope gets 84074 (no external contact privilege); one with no customers 84061 (not external contact).
- externalcontact/add_msg_template: creates a mass message the sender must confirm in WeCom's
  客户群发 (nothing reaches a customer before). Answers msgid and fail_list (customers who are not the
  sender's); 41048 when nobody is left to send to.
- externalcontact/get_groupmsg_send_result: per customer, status 0 unsent, 1 sent, 2 not a friend
  (any more), 3 already got a mass message today; 41063 right after creation (still being dispatched).
- externalcontact/add_moment_task + get_moment_task_result: an asynchronous job (jobid) that makes a
  moment (moment_id); get_moment_task: per sender, publish_status 0 not yet, 1 published.
When the app is not on the customer-contact API list (`api_allowed` False), every call is 48002.
`confirm(msgid)` is the member tapping send in WeCom (tests, and the sandbox's button); `publish(moment_id)`
the member publishing a Moments post.
"""
from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from bot.simulator.common import _error

if TYPE_CHECKING:
    from bot.simulator.server import WeComSimulator

MAX_ATTACHMENTS = 9
MAX_TEXT_BYTES = 4000
ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")


@dataclass
class MassMessage:
    msgid: str
    sender: str
    text: str
    attachments: list[dict[str, Any]]
    # external_userid -> (status, send_time)
    results: dict[str, tuple[int, int]] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def link_urls(self) -> list[str]:
        return [a["link"]["url"] for a in self.attachments if a.get("msgtype") == "link"]


@dataclass
class MomentTask:
    jobid: str
    senders: list[str]
    invalid: list[str]
    text: str
    attachments: list[dict[str, Any]]
    moment_id: str = field(default_factory=lambda: "mom" + secrets.token_hex(8))
    published: set[str] = field(default_factory=set)


class CustomerContact:
    def __init__(self, sim: WeComSimulator) -> None:
        self.sim = sim
        self.customers: dict[str, list[str]] = {}
        self.no_permission: set[str] = set()  # members outside the customer-contact scope
        self.api_allowed = True
        # A mass message just created is still being dispatched this long (get_groupmsg_send_result: 41063).
        self.dispatch_seconds = 0.0
        self.mass_messages: dict[str, MassMessage] = {}
        self.moments: dict[str, MomentTask] = {}
        self._ids = itertools.count(1)

    # ----- test and sandbox helpers ------------------------------------------------------------
    def give(self, userid: str, count: int) -> list[str]:
        """`count` customers for this member (external_userids like WeCom's wm… ids)."""
        made = [f"wm{userid}{next(self._ids):06d}" for _ in range(count)]
        self.customers.setdefault(userid, []).extend(made)
        return made

    def sent_by(self, sender: str) -> list[MassMessage]:
        return [m for m in self.mass_messages.values() if m.sender == sender]

    def confirm(self, msgid: str, reached: int | None = None) -> int:
        """The sender taps send in WeCom: the first `reached` customers (all if None) get it; the
        rest are no longer friends (status 2). Returns how many got it."""
        message = self.mass_messages[msgid]
        now = int(time.time())
        for i, customer in enumerate(message.results):
            message.results[customer] = (1, now) if reached is None or i < reached else (2, 0)
        return sum(1 for status, _ in message.results.values() if status == 1)

    def moments_by(self, sender: str) -> list[MomentTask]:
        return [m for m in self.moments.values() if sender in m.senders]

    def publish(self, moment_id: str, sender: str | None = None) -> None:
        """The sender (every sender if None) publishes the Moments post in WeCom."""
        task = next(m for m in self.moments.values() if m.moment_id == moment_id)
        task.published.update([sender] if sender else task.senders)

    # ----- the API -----------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        api = "/cgi-bin/externalcontact/"
        return [web.get(api + "list", self._guard(self.api_list)),
                web.get(api + "get_follow_user_list", self._guard(self.api_follow_users)),
                web.post(api + "add_msg_template", self._guard(self.api_add_msg_template, body=True)),
                web.post(api + "get_groupmsg_send_result", self._guard(self.api_send_result, body=True)),
                web.post(api + "add_moment_task", self._guard(self.api_add_moment_task, body=True)),
                web.get(api + "get_moment_task_result", self._guard(self.api_moment_result)),
                web.post(api + "get_moment_task", self._guard(self.api_moment_task, body=True))]

    def _guard(self, handler: Callable[..., web.Response], body: bool = False) -> Callable[[web.Request], Any]:
        async def route(request: web.Request) -> web.Response:
            self.sim.api_calls["externalcontact/" + request.path.rsplit("/", 1)[-1]] += 1
            if (problem := self.sim._check_token(request)) is not None:
                return problem
            if not self.api_allowed:
                return _error(48002, "api forbidden")
            if not body:
                return handler(request.query)
            try:
                data = await request.json()
            except (ValueError, UnicodeDecodeError):
                return _error(47001, "data format error")
            return handler(data) if isinstance(data, dict) else _error(47001, "data format error")
        return route

    def _member_problem(self, userid: Any) -> web.Response | None:
        if not isinstance(userid, str) or userid not in self.sim.directory:
            return _error(60111, "userid not found")
        if userid in self.no_permission:
            return _error(84074, "no external contact privilege")
        return None

    def api_list(self, query: Any) -> web.Response:
        userid = query.get("userid", "")
        if (problem := self._member_problem(userid)) is not None:
            return problem
        if not self.customers.get(userid):
            return _error(84061, "not external contact")
        return web.json_response({"errcode": 0, "errmsg": "ok", "external_userid": list(self.customers[userid])})

    def api_follow_users(self, _query: Any) -> web.Response:
        return web.json_response({"errcode": 0, "errmsg": "ok",
                                  "follow_user": [u for u in self.sim.directory if u not in self.no_permission]})

    def api_add_msg_template(self, body: dict[str, Any]) -> web.Response:
        if body.get("chat_type", "single") != "single":
            return _error(40058, "only single chat_type is simulated")
        sender, wanted = body.get("sender"), body.get("external_userid")
        if not sender and not wanted:
            return _error(40058, "sender and external_userid are both empty")
        if sender and (problem := self._member_problem(sender)) is not None:
            return problem
        text = (body.get("text") or {}).get("content", "")
        attachments = body.get("attachments") or []
        if not text and not attachments:
            return _error(44004, "empty content")
        if not isinstance(text, str) or len(text.encode()) > MAX_TEXT_BYTES:
            return _error(45002, "content size out of limit")
        if (problem := _check_attachments(attachments)) is not None:
            return problem
        own = self.customers.get(sender, [])
        if wanted is None:
            targets, failed = list(own), []
        elif not isinstance(wanted, list) or len(wanted) > 10000:
            return _error(40058, "invalid external_userid")
        else:
            targets = [c for c in wanted if c in own]
            failed = [c for c in wanted if c not in own]
        if not targets:
            return _error(41048, "no customer to send")
        msgid = "msg" + secrets.token_hex(12)
        self.mass_messages[msgid] = MassMessage(msgid, sender, text, attachments, {c: (0, 0) for c in targets})
        return web.json_response({"errcode": 0, "errmsg": "ok", "fail_list": failed, "msgid": msgid})

    def api_send_result(self, body: dict[str, Any]) -> web.Response:
        msgid, userid = body.get("msgid"), body.get("userid")
        if not msgid:
            return _error(41046, "missing msgid")
        message = self.mass_messages.get(msgid)
        if message is None:
            return _error(41047, "invalid msgid")
        if time.time() - message.created < self.dispatch_seconds:
            return _error(41063, "msg is being dispatched, try again later")
        limit = body.get("limit", 500)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            limit = 500
        start = int(body.get("cursor") or 0) if str(body.get("cursor") or "0").isdecimal() else 0
        rows = [] if userid != message.sender else list(message.results.items())
        page = rows[start:start + limit]
        return web.json_response({
            "errcode": 0, "errmsg": "ok", "next_cursor": str(start + limit) if start + limit < len(rows) else "",
            "send_list": [{"external_userid": customer, "userid": message.sender, "status": status,
                           **({"send_time": sent} if status == 1 else {})} for customer, (status, sent) in page]})

    def api_add_moment_task(self, body: dict[str, Any]) -> web.Response:
        text = (body.get("text") or {}).get("content", "")
        attachments = body.get("attachments") or []
        if not text and not attachments:
            return _error(44004, "empty content")
        if (problem := _check_attachments(attachments)) is not None:
            return problem
        senders = ((body.get("visible_range") or {}).get("sender_list") or {}).get("user_list") or []
        valid = [s for s in senders if s in self.sim.directory and s not in self.no_permission]
        jobid = "job" + secrets.token_hex(8)
        self.moments[jobid] = MomentTask(jobid, valid, [s for s in senders if s not in valid], text, attachments)
        return web.json_response({"errcode": 0, "errmsg": "ok", "jobid": jobid})

    def api_moment_result(self, query: Any) -> web.Response:
        task = self.moments.get(query.get("jobid", ""))
        if task is None:
            return _error(40058, "invalid jobid")
        return web.json_response({"errcode": 0, "errmsg": "ok", "status": 3, "type": "add_moment_task", "result": {
            "errcode": 0, "errmsg": "ok", "moment_id": task.moment_id,
            "invalid_sender_list": {"user_list": task.invalid, "department_list": []},
            "invalid_external_contact_list": {"tag_list": []}}})

    def api_moment_task(self, body: dict[str, Any]) -> web.Response:
        task = next((m for m in self.moments.values() if m.moment_id == body.get("moment_id")), None)
        if task is None:
            return _error(40058, "invalid moment_id")
        return web.json_response({"errcode": 0, "errmsg": "ok", "next_cursor": "", "task_list": [
            {"userid": s, "publish_status": 1 if s in task.published else 0} for s in task.senders]})


def _check_attachments(attachments: Any) -> web.Response | None:
    if not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS:
        return _error(40058, f"at most {MAX_ATTACHMENTS} attachments")
    for attachment in attachments:
        kind = attachment.get("msgtype") if isinstance(attachment, dict) else None
        if kind not in ATTACHMENT_TYPES or not isinstance(attachment.get(kind), dict):
            return _error(41065, "invalid attachment type")
        if kind == "link":
            link = attachment["link"]
            if not link.get("title") or not link.get("url"):
                return _error(40058, "link title and url are required")
            if not str(link["url"]).startswith(("http://", "https://")):
                return _error(45034, "url must have a protocol")
    return None
