"""WeCom server API client over aiohttp (wechatpy's client is synchronous and would block the loop).

The access token is cached until shortly before it expires, shared through Redis when configured so
that several instances do not each fetch their own (gettoken has its own frequency limit).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from bot.config import WeComConfig
from store.redis import SharedKeys

log = logging.getLogger(__name__)

# -1 system busy; 45009 frequency limit; 45033 too many concurrent calls (DESIGN §10).
TRANSIENT_ERRCODES = frozenset({-1, 45009, 45033})
# Invalid, expired or missing access token: fetch a new one and try once more.
TOKEN_ERRCODES = frozenset({40014, 42001, 41001})
TOKEN_SAFETY_MARGIN_SECONDS = 300


class WeComError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeCom error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg

    @property
    def transient(self) -> bool:
        return self.errcode in TRANSIENT_ERRCODES


class WeComUnavailable(Exception):
    """The API could not be reached or answered with something other than WeCom JSON."""

    transient = True


class WeComClient:
    def __init__(self, config: WeComConfig, http: aiohttp.ClientSession, shared: SharedKeys) -> None:
        self.config = config
        self.http = http
        self.shared = shared
        self.base = config.api_base_url.rstrip("/")
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()
        self._token_key = f"wecom:token:{config.corp_id}:{config.agent_id}"

    async def access_token(self, *, refresh: bool = False) -> str:
        if not refresh and self._token and self._token[1] > time.time():
            return self._token[0]
        async with self._token_lock:
            if not refresh and self._token and self._token[1] > time.time():
                return self._token[0]
            if not refresh:
                shared = await self.shared.get(self._token_key)
                if shared:
                    token, _, expires = shared.partition(" ")
                    if float(expires or 0) > time.time():
                        self._token = (token, float(expires))
                        return token
            data = await self._request("GET", "/cgi-bin/gettoken",
                                       params={"corpid": self.config.corp_id, "corpsecret": self.config.secret})
            token = str(data["access_token"])
            lifetime = int(data.get("expires_in", 7200)) - TOKEN_SAFETY_MARGIN_SECONDS
            expires = time.time() + max(lifetime, 60)
            self._token = (token, expires)
            await self.shared.set(self._token_key, f"{token} {expires}", max(lifetime, 60))
            log.info("fetched a new WeCom access token (valid %d s)", lifetime)
            return token

    async def call(self, method: str, path: str, *, json: Any = None, data: Any = None,
                   params: dict[str, str] | None = None) -> dict[str, Any]:
        """Call an API that takes access_token; refresh the token once if WeCom rejects it."""
        for attempt in (1, 2):
            token = await self.access_token(refresh=attempt == 2)
            try:
                # A multipart body can be read only once, so it arrives as a factory.
                body = data() if callable(data) else data
                return await self._request(method, path, params={**(params or {}), "access_token": token},
                                           json=json, data=body)
            except WeComError as err:
                if err.errcode not in TOKEN_ERRCODES or attempt == 2:
                    raise
                log.info("WeCom rejected the access token (%d); fetching a new one", err.errcode)
        raise AssertionError("unreachable")

    async def send_message(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/cgi-bin/message/send", json={**body, "agentid": self.config.agent_id})

    async def list_users(self, department_id: int, *, fetch_child: bool = True) -> list[dict[str, Any]]:
        """user/list: a department's members (the app needs read access to the contacts)."""
        data = await self.call("GET", "/cgi-bin/user/list",
                               params={"department_id": str(department_id), "fetch_child": "1" if fetch_child else "0"})
        return list(data.get("userlist", []))

    async def upload_media(self, kind: str, filename: str, content: bytes, content_type: str) -> str:
        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            body.add_field("media", content, filename=filename, content_type=content_type)
            return body

        data = await self.call("POST", "/cgi-bin/media/upload", params={"type": kind}, data=form)
        return str(data["media_id"])

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.config.api_timeout_seconds)
        try:
            async with self.http.request(method, self.base + path, timeout=timeout, **kwargs) as response:
                if response.status != 200:
                    raise WeComUnavailable(f"HTTP {response.status} from {path}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
            raise WeComUnavailable(f"{type(err).__name__} calling {path}") from err
        if not isinstance(data, dict):
            raise WeComUnavailable(f"unexpected answer from {path}")
        errcode = int(data.get("errcode", 0) or 0)
        if errcode != 0:
            raise WeComError(errcode, str(data.get("errmsg", "")))
        return data
