"""A platform API client over aiohttp: access token cached (and shared through Redis, so several
instances do not each fetch their own: fetching has its own frequency limit), JSON errcode handling,
one token refresh when the platform rejects the token, and multipart media upload.

WeCom and the WeChat Official Account speak the same dialect and differ in how a token is fetched
and which error codes mean what; each subclass says so. (wechatpy's clients are synchronous and
would block the event loop.)
"""
from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from store.redis import SharedKeys

log = logging.getLogger(__name__)

TOKEN_SAFETY_MARGIN_SECONDS = 300
T = TypeVar("T")
# A JSON body goes as bytes serialized once (a retry with a new token reuses them) under this header.
JSON_HEADERS = {"Content-Type": "application/json"}


class ApiError(Exception):
    """The platform answered with a non-zero errcode."""

    platform = "API"
    transient_errcodes: frozenset[int] = frozenset()
    # errcode -> the [outbox] setting for how long the whole sender pauses ("slow down", not "failed").
    throttles: dict[int, str] = {}

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{self.platform} error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg

    @property
    def transient(self) -> bool:
        return self.errcode in self.transient_errcodes


class ApiUnavailable(Exception):
    """The API could not be reached or answered with something other than the platform's JSON."""

    transient = True


class TokenClient:
    error_class: type[ApiError] = ApiError
    # Invalid, expired or missing access token: fetch a new one and try once more.
    token_errcodes: frozenset[int] = frozenset()

    def __init__(self, http: aiohttp.ClientSession, shared: SharedKeys, *, base_url: str, timeout: float,
                 token_key: str) -> None:
        self.http = http
        self.shared = shared
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
        # path -> (token, the path's URL with that token): a broadcast calls one path thousands of
        # times with one token, so the URL is built and its query encoded once, not per call.
        self._urls: dict[str, tuple[str, URL]] = {}
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()
        self._token_key = token_key

    async def _fetch_token(self) -> dict[str, Any]:
        raise NotImplementedError

    async def access_token(self, *, rejected: str | None = None) -> str:
        """The cached token; a new one only when there is none or the platform just rejected this one
        (`rejected`). Many sends meeting one expired token fetch one new token, not one each: on the
        Official Account every fetch also retires the token other instances hold."""
        current = self._token
        if current and current[1] > time.time() and current[0] != rejected:
            return current[0]
        async with self._token_lock:
            current = self._token
            if current and current[1] > time.time() and current[0] != rejected:
                return current[0]  # another send has just fetched a new one
            shared = await self.shared.get(self._token_key)
            if shared:
                token, _, expires = shared.partition(" ")
                if float(expires or 0) > time.time() and token != rejected:
                    self._token = (token, float(expires))
                    return token  # another instance has
            try:
                data = await self._fetch_token()
            except ApiError as err:
                # A wrong secret or a server IP not on the allow-list: worth retrying once fixed.
                raise ApiUnavailable(f"cannot get an access token: {err}") from err
            token = str(data["access_token"])
            lifetime = int(data.get("expires_in", 7200)) - TOKEN_SAFETY_MARGIN_SECONDS
            expires = time.time() + max(lifetime, 60)
            self._token = (token, expires)
            await self.shared.set(self._token_key, f"{token} {expires}", max(lifetime, 60))
            log.info("fetched a new %s access token (valid %d s)", self.error_class.platform, lifetime)
            return token

    async def call(self, method: str, path: str, *, json: Any = None, data: Any = None,
                   params: dict[str, str] | None = None) -> dict[str, Any]:
        """Call an API that takes access_token; refresh the token once if the platform rejects it."""
        headers = None
        if json is not None and data is None:
            # Serialized here, once; as UTF-8, not \u escapes (WeCom and WeChat read either).
            data, headers = jsonlib.dumps(json, ensure_ascii=False).encode(), JSON_HEADERS

        async def once(token: str) -> dict[str, Any]:
            # A multipart body can be read only once, so it arrives as a factory.
            body = data() if callable(data) else data
            if params:
                return await self._request(method, path, params={**params, "access_token": token}, data=body,
                                           headers=headers)
            return await self._request(method, self._url(path, token), data=body, headers=headers, label=path)

        return await self.with_token(once)

    def _url(self, path: str, token: str) -> URL:
        known = self._urls.get(path)
        if known is None or known[0] != token:
            known = self._urls[path] = (token, URL(self.base + path).with_query(access_token=token))
        return known[1]

    async def with_token(self, attempt: Callable[[str], Awaitable[T]]) -> T:
        """`attempt(token)`, once more with a new token if the platform rejects this one."""
        rejected = None
        for number in (1, 2):
            token = await self.access_token(rejected=rejected)
            try:
                return await attempt(token)
            except ApiError as err:
                if err.errcode not in self.token_errcodes or number == 2:
                    raise
                rejected = token
                log.info("%s rejected the access token (%d); fetching a new one", err.platform, err.errcode)
        raise AssertionError("unreachable")

    async def upload_media(self, kind: str, filename: str, content: bytes, content_type: str) -> str:
        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            body.add_field("media", content, filename=filename, content_type=content_type)
            return body

        data = await self.call("POST", "/cgi-bin/media/upload", params={"type": kind}, data=form)
        return str(data["media_id"])

    async def _request(self, method: str, path: str | URL, *, label: str = "", **kwargs: Any) -> dict[str, Any]:
        """`path`: the API's path, or its whole URL already built (then `label` names it in errors)."""
        url, label = (self.base + path, path) if isinstance(path, str) else (path, label)
        try:
            async with self.http.request(method, url, timeout=self._client_timeout, **kwargs) as response:
                if response.status != 200:
                    raise ApiUnavailable(f"HTTP {response.status} from {label}")
                data = jsonlib.loads(await response.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
            raise ApiUnavailable(f"{type(err).__name__} calling {label}") from err
        if not isinstance(data, dict):
            raise ApiUnavailable(f"unexpected answer from {label}")
        errcode = int(data.get("errcode", 0) or 0)
        if errcode != 0:
            raise self.error_class(errcode, str(data.get("errmsg", "")))
        return data
