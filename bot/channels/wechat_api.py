"""WeChat Official Account server API client: customer-service messages, media, the custom menu."""
from __future__ import annotations

from typing import Any

import aiohttp

from bot.channels.api_client import ApiError, TokenClient
from bot.config import WeChatConfig
from store.redis import SharedKeys

# 45015: the follower has not written in the last 48 hours, so customer-service messages are refused
# until they do (DESIGN §10); 45047: too many messages since they last wrote.
OUTSIDE_WINDOW_ERRCODES = frozenset({45015, 45047})


class WeChatError(ApiError):
    platform = "WeChat"
    # -1 system busy; 45011 API minute quota (frequency); 45009 is the *daily* quota: not worth retrying soon.
    transient_errcodes = frozenset({-1, 45011})

    @property
    def waits_for_member(self) -> bool:
        """Sendable only after the follower writes again."""
        return self.errcode in OUTSIDE_WINDOW_ERRCODES


class WeChatClient(TokenClient):
    error_class = WeChatError
    token_errcodes = frozenset({40001, 40014, 41001, 42001})

    def __init__(self, config: WeChatConfig, http: aiohttp.ClientSession, shared: SharedKeys) -> None:
        super().__init__(http, shared, base_url=config.api_base_url, timeout=config.api_timeout_seconds,
                         token_key=f"wechat:token:{config.app_id}")
        self.config = config

    async def _fetch_token(self) -> dict[str, Any]:
        return await self._request("GET", "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.config.app_id, "secret": self.config.secret})

    async def send_custom(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/cgi-bin/message/custom/send", json=body)

    async def create_menu(self, menu: dict[str, Any]) -> None:
        await self.call("POST", "/cgi-bin/menu/create", json=menu)

    async def get_menu(self) -> dict[str, Any]:
        return await self.call("GET", "/cgi-bin/menu/get")
