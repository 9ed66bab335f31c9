"""Misconfigurations the simulators can be told to act out, so `partnerbot check` meets each error a
real WeCom app or Official Account answers with (and every explanation it gives has a test).

A fault is what the platform answers while the console is set up wrong: it stays until cleared, like
the wrong setting would. Error codes and messages are the platforms' own, the client's IP included
where they name it (WeCom's 60020 "from ip", WeChat's 40164 "invalid ip").

Tests call `Faults.apply(name)`; someone running `partnerbot simulator` uses the same names through
`POST /simulator/faults {"fault": NAME}` (or `{"api": "gettoken", "errcode": 40091}`) and
`DELETE /simulator/faults`.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.simulator.common import _error

if TYPE_CHECKING:
    from bot.simulator.agent import AgentApp
    from bot.simulator.wechat import WeChatSimulator

# Every API but the token fetch (WeCom refuses calls from an untrusted IP, not gettoken itself).
EVERY_CALL = "*"
WECOM_IP_REFUSED = ("not allow to access from your ip, hint: [{hint}], from ip: {ip}, "
                    "more info at https://open.work.weixin.qq.com/devtool/query?e=60020")
WECHAT_IP_REFUSED = "invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist rid: {hint}"

# name -> (api, errcode, errmsg) for faults that are one refused call.
WECOM_FAULTS: dict[str, tuple[str, int, str]] = {
    "wrong_corp_id": ("gettoken", 40013, "invalid corpid"),
    "wrong_secret": ("gettoken", 40001, "invalid credential"),
    "ip_not_trusted": (EVERY_CALL, 60020, WECOM_IP_REFUSED),
    "message_refused": ("message/send", 81013, "user & party & tag all invalid"),
    "no_customer_contact": ("externalcontact/get_follow_user_list", 48002, "api forbidden"),
}
WECHAT_FAULTS: dict[str, tuple[str, int, str]] = {
    "oa_wrong_secret": ("token", 40125, "invalid appsecret"),
    "oa_ip_whitelist": ("token", 40164, WECHAT_IP_REFUSED),
    "oa_unverified": ("menu/get", 48001, "api unauthorized"),
}


class Faults:
    """The refusals one simulated platform is acting out, checked before any API handler runs."""

    def __init__(self, token_api: str, presets: dict[str, tuple[str, int, str]],
                 states: dict[str, tuple[Callable[[], None], Callable[[], None]]] | None = None,
                 own_paths: str = "") -> None:
        self.token_api = token_api
        # WeCom's API is at the root; the Official Account's is mounted beside it (/mp), and WeCom's
        # faults must not answer for it.
        self.own_paths = own_paths
        self.presets = presets
        # Faults that are a state of the console rather than a refused call (an empty visible range):
        # name -> (act it out, put it right).
        self.states = dict(states or {})
        self.rules: dict[str, tuple[int, str]] = {}

    @property
    def names(self) -> list[str]:
        return [*self.presets, *self.states]

    def apply(self, name: str) -> None:
        if name in self.states:
            self.states[name][0]()
            return
        api, errcode, errmsg = self.presets[name]
        self.refuse(api, errcode, errmsg)

    def refuse(self, api: str, errcode: int, errmsg: str = "") -> None:
        """Answer every call of `api` (e.g. "gettoken", "message/send", or EVERY_CALL) with this error."""
        self.rules[api] = (errcode, errmsg or "simulated error")

    def clear(self) -> None:
        self.rules.clear()
        for _act, put_right in self.states.values():
            put_right()

    def answer_for(self, path: str, remote: str) -> web.Response | None:
        if "/cgi-bin/" not in path or not path.startswith(self.own_paths):
            return None
        api = path.split("/cgi-bin/", 1)[1]
        rule = self.rules.get(api) or (self.rules.get(EVERY_CALL) if api != self.token_api else None)
        if rule is None:
            return None
        errcode, errmsg = rule
        return _error(errcode, errmsg.format(ip=remote, hint=secrets.token_hex(8)))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        refused = self.answer_for(request.path, request.remote or "127.0.0.1")
        return refused if refused is not None else await handler(request)


def wecom_faults(agent: AgentApp) -> Faults:
    return Faults("gettoken", WECOM_FAULTS, {"empty_visible_range": (agent.set_range, agent.whole_company)},
                  own_paths="/cgi-bin/")


def wechat_faults(account: WeChatSimulator) -> Faults:
    # Putting "no menu" right is the admin's job: `partnerbot wechat menu`.
    return Faults("token", WECHAT_FAULTS, {"oa_no_menu": (lambda: setattr(account, "menu", None), lambda: None)})


def fault_routes(*platforms: Faults) -> list[web.RouteDef]:
    """POST /simulator/faults to act out a misconfiguration by name (or an api and errcode on the
    first platform, WeCom), DELETE to clear them all."""

    async def set_fault(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"error": "send JSON: {\"fault\": NAME} or {\"api\", \"errcode\"}"}, status=400)
        name = body.get("fault")
        if name is not None:
            for faults in platforms:
                if name in faults.names:
                    faults.apply(name)
                    return web.json_response({"ok": True, "fault": name})
            known = [n for faults in platforms for n in faults.names]
            return web.json_response({"error": f"unknown fault {name!r}; known: {', '.join(known)}"}, status=422)
        api, errcode = body.get("api"), body.get("errcode")
        if not isinstance(api, str) or not api or not isinstance(errcode, int) or isinstance(errcode, bool):
            return web.json_response({"error": "api must be a string and errcode a whole number"}, status=422)
        platforms[0].refuse(api, errcode, str(body.get("errmsg") or ""))
        return web.json_response({"ok": True, "api": api, "errcode": errcode})

    async def clear(_request: web.Request) -> web.Response:
        for faults in platforms:
            faults.clear()
        return web.json_response({"ok": True})

    return [web.post("/simulator/faults", set_fault), web.delete("/simulator/faults", clear)]
