"""WeCom server API client (the shared machinery is in api_client.py)."""
from __future__ import annotations

from typing import Any

import aiohttp

from bot.channels.api_client import ApiError, ApiUnavailable, TokenClient
from bot.config import WeComConfig
from store.redis import SharedKeys


class WeComError(ApiError):
    platform = "WeCom"
    # -1 system busy; 45009 frequency limit; 45033 too many concurrent calls (DESIGN §10).
    transient_errcodes = frozenset({-1, 45009, 45033})
    throttles = {45009: "throttle_pause_seconds", 45033: "concurrency_pause_seconds"}


WeComUnavailable = ApiUnavailable


class WeComClient(TokenClient):
    error_class = WeComError
    token_errcodes = frozenset({40014, 42001, 41001})

    def __init__(self, config: WeComConfig, http: aiohttp.ClientSession, shared: SharedKeys) -> None:
        super().__init__(http, shared, base_url=config.api_base_url, timeout=config.api_timeout_seconds,
                         token_key=f"wecom:token:{config.corp_id}:{config.agent_id}")
        self.config = config

    async def _fetch_token(self) -> dict[str, Any]:
        return await self._request("GET", "/cgi-bin/gettoken",
                                   params={"corpid": self.config.corp_id, "corpsecret": self.config.secret})

    async def send_message(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/cgi-bin/message/send", json={**body, "agentid": self.config.agent_id})

    async def list_users(self, department_id: int, *, fetch_child: bool = True) -> list[dict[str, Any]]:
        """user/list: a department's members (the app needs read access to the contacts)."""
        data = await self.call("GET", "/cgi-bin/user/list",
                               params={"department_id": str(department_id), "fetch_child": "1" if fetch_child else "0"})
        return list(data.get("userlist", []))
