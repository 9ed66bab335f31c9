"""WeCom server API client (the shared machinery is in api_client.py)."""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp

from bot.channels.api_client import ApiError, ApiUnavailable, TokenClient
from bot.channels.pacing import CallPacer
from bot.config import WeComConfig
from store.redis import SharedKeys


class WeComError(ApiError):
    platform = "WeCom"
    # -1 system busy; 45009 frequency limit; 45033 too many concurrent calls (DESIGN §10).
    transient_errcodes = frozenset({-1, 45009, 45033})
    throttles = {45009: "throttle_pause_seconds", 45033: "concurrency_pause_seconds"}
    # Customer contact: 48002 the app may not call these APIs; 84074 the member is outside the
    # customer-contact scope; 84061 / 41048 the member has no customers (to send to); 41063 a mass
    # message just created is still being dispatched (ask again later).
    no_permission_errcodes = frozenset({48002, 84074})
    no_customers_errcodes = frozenset({84061, 41048})
    dispatching_errcode = 41063

    @property
    def no_customer_permission(self) -> bool:
        return self.errcode in self.no_permission_errcodes

    @property
    def no_customers(self) -> bool:
        return self.errcode in self.no_customers_errcodes


WeComUnavailable = ApiUnavailable
# media/get's answer names the file: `filename*=UTF-8''<percent-encoded>` or `filename="name"`.
_EXTENDED_NAME = re.compile(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)")
_PLAIN_NAME = re.compile(r'filename\s*=\s*"?([^";]+)"?')


class MediaTooLarge(Exception):
    """media/get's file is over the size asked for: at least `size` bytes (the rest is not read)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"media of at least {size} bytes")
        self.size = size


@dataclass(frozen=True)
class MediaFile:
    data: bytes
    filename: str
    content_type: str


def disposition_name(header: str) -> str:
    if match := _EXTENDED_NAME.search(header):
        return unquote(match.group(1).strip())
    match = _PLAIN_NAME.search(header)
    return match.group(1).strip() if match else ""


class WeComClient(TokenClient):
    error_class = WeComError
    token_errcodes = frozenset({40014, 42001, 41001})

    def __init__(self, config: WeComConfig, http: aiohttp.ClientSession, shared: SharedKeys) -> None:
        super().__init__(http, shared, base_url=config.api_base_url, timeout=config.api_timeout_seconds,
                         token_key=f"wecom:token:{config.corp_id}:{config.agent_id}")
        self.config = config
        # media/upload is limited per company (every app and instance together): 10,000 a minute and
        # 150,000 an hour. Posters for a 10,000-member broadcast would otherwise meet it.
        self.upload_pacer = CallPacer(shared, f"wecom:pace:{config.corp_id}:media/upload",
                                      [(config.media_uploads_per_hour, 3600), (config.media_uploads_per_minute, 60)])

    async def upload_media(self, kind: str, filename: str, content: bytes, content_type: str) -> str:
        await self.upload_pacer.turn()
        return await super().upload_media(kind, filename, content, content_type)

    async def _fetch_token(self) -> dict[str, Any]:
        return await self._request("GET", "/cgi-bin/gettoken",
                                   params={"corpid": self.config.corp_id, "corpsecret": self.config.secret})

    async def send_message(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/cgi-bin/message/send", json={**body, "agentid": self.config.agent_id})

    async def update_button(self, userid: str, response_code: str, label: str) -> dict[str, Any]:
        """Grey out the buttons of the card a member tapped, reading `label` (the click's response
        code works once, for 72 hours)."""
        return await self.call("POST", "/cgi-bin/message/update_template_card", json={
            "userids": [userid], "agentid": self.config.agent_id, "response_code": response_code,
            "button": {"replace_name": label}})

    async def list_users(self, department_id: int, *, fetch_child: bool = True) -> list[dict[str, Any]]:
        """user/list: a department's members (the app needs read access to the contacts)."""
        data = await self.call("GET", "/cgi-bin/user/list",
                               params={"department_id": str(department_id), "fetch_child": "1" if fetch_child else "0"})
        return list(data.get("userlist", []))

    async def get_media(self, media_id: str, max_bytes: int) -> MediaFile:
        """media/get: an image or file a member sent the app (WeCom keeps it 3 days, then 40007). Read
        as it streams in: MediaTooLarge as soon as it is over `max_bytes`."""
        async def once(token: str) -> MediaFile:
            # Big files take a while: the usual API timeout, but at least a minute.
            timeout = aiohttp.ClientTimeout(total=max(self.timeout, 60.0))
            try:
                async with self.http.get(self.base + "/cgi-bin/media/get", timeout=timeout,
                                         params={"access_token": token, "media_id": media_id}) as response:
                    if response.status != 200:
                        raise ApiUnavailable(f"HTTP {response.status} from /cgi-bin/media/get")
                    if response.content_type in ("application/json", "text/plain"):
                        answer = await response.json(content_type=None)  # an error is JSON, a file is not
                        errcode = int(answer.get("errcode", 0) or 0) if isinstance(answer, dict) else 0
                        if errcode:
                            raise WeComError(errcode, str(answer.get("errmsg", "")))
                        raise ApiUnavailable("media/get answered JSON without an error code")
                    if response.content_length is not None and response.content_length > max_bytes:
                        raise MediaTooLarge(response.content_length)
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(256 * 1024):
                        data += chunk
                        if len(data) > max_bytes:
                            raise MediaTooLarge(len(data))
                    return MediaFile(bytes(data), disposition_name(response.headers.get("Content-Disposition", "")),
                                     response.content_type)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
                raise ApiUnavailable(f"{type(err).__name__} calling /cgi-bin/media/get") from err

        return await self.with_token(once)

    # ----- customer contact (客户联系) ---------------------------------------------------------------
    async def list_customers(self, userid: str) -> list[str]:
        """externalcontact/list: the member's customers (external_userid); none is WeCom's 84061."""
        try:
            data = await self.call("GET", "/cgi-bin/externalcontact/list", params={"userid": userid})
        except WeComError as err:
            if err.errcode == 84061:
                return []
            raise
        return [str(c) for c in data.get("external_userid", [])]

    async def add_msg_template(self, sender: str, text: str, attachments: list[dict[str, Any]],
                               external_userids: list[str] | None = None) -> tuple[str, list[str]]:
        """externalcontact/add_msg_template (chat_type single): a customer mass message the sender
        confirms in WeCom's 客户群发. Returns (msgid, fail_list)."""
        body: dict[str, Any] = {"chat_type": "single", "sender": sender, "text": {"content": text},
                                "attachments": attachments, "allow_select": False}
        if external_userids is not None:
            body["external_userid"] = external_userids
        data = await self.call("POST", "/cgi-bin/externalcontact/add_msg_template", json=body)
        return str(data["msgid"]), [str(c) for c in data.get("fail_list", [])]

    async def groupmsg_send_result(self, msgid: str, userid: str) -> list[dict[str, Any]]:
        """externalcontact/get_groupmsg_send_result, every page: one row per customer, status 0
        unsent, 1 sent, 2 not a friend, 3 already got a mass message."""
        rows: list[dict[str, Any]] = []
        cursor = ""
        while True:
            data = await self.call("POST", "/cgi-bin/externalcontact/get_groupmsg_send_result",
                                   json={"msgid": msgid, "userid": userid, "limit": 1000, "cursor": cursor})
            rows += list(data.get("send_list", []))
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                return rows

    async def add_moment_task(self, senders: list[str], text: str, attachments: list[dict[str, Any]]) -> str:
        """externalcontact/add_moment_task: an asynchronous job; returns its jobid."""
        data = await self.call("POST", "/cgi-bin/externalcontact/add_moment_task", json={
            "text": {"content": text}, "attachments": attachments,
            "visible_range": {"sender_list": {"user_list": senders}}})
        return str(data["jobid"])

    async def moment_task_result(self, jobid: str) -> dict[str, Any]:
        """externalcontact/get_moment_task_result: status 1 started, 2 running, 3 done, and the result."""
        return await self.call("GET", "/cgi-bin/externalcontact/get_moment_task_result", params={"jobid": jobid})

    async def moment_publish_status(self, moment_id: str) -> dict[str, int]:
        """externalcontact/get_moment_task, every page: per sender (userid), publish_status 0 not yet
        published, 1 published."""
        statuses: dict[str, int] = {}
        cursor = ""
        while True:
            data = await self.call("POST", "/cgi-bin/externalcontact/get_moment_task",
                                   json={"moment_id": moment_id, "cursor": cursor, "limit": 1000})
            statuses.update({str(row.get("userid")): int(row.get("publish_status", 0))
                             for row in data.get("task_list", [])})
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                return statuses
