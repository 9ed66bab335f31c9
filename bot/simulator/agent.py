"""The self-built app as WeCom's agent/get shows it: its name, whether it is enabled, and its visible
range (可见范围), the members, departments and tags whose people may use it. As in WeCom, message/send
reaches only people in the visible range (the others come back in `invaliduser`, or 81013 when
nobody is left)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bot.simulator.common import _error

if TYPE_CHECKING:
    from bot.simulator.server import WeComSimulator

ROOT_DEPARTMENT = 1


class AgentApp:
    def __init__(self, sim: WeComSimulator, name: str = "partnerbot") -> None:
        self.sim = sim
        self.name = name
        self.closed = False
        # The whole company by default (the root department), as a newly made app is often set.
        self.users: set[str] = set()
        self.departments: set[int] = {ROOT_DEPARTMENT}
        self.tags: set[int] = set()

    def set_range(self, users: set[str] = frozenset(), departments: set[int] = frozenset(),  # type: ignore[assignment]
                  tags: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.users, self.departments, self.tags = set(users), set(departments), set(tags)

    def whole_company(self) -> None:
        self.set_range(departments={ROOT_DEPARTMENT})

    def departments_of(self, userid: str) -> list[int]:
        return sorted(d for d, members in self.sim.departments.items() if userid in members) or [ROOT_DEPARTMENT]

    def can_reach(self, userid: str) -> bool:
        if userid in self.users or ROOT_DEPARTMENT in self.departments:
            return True
        return any(userid in self.sim.departments.get(d, set()) for d in self.departments)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/cgi-bin/agent/get", self.api_agent_get)]

    async def api_agent_get(self, request: web.Request) -> web.Response:
        self.sim.api_calls["agent/get"] += 1
        if (problem := self.sim._check_token(request)) is not None:
            return problem
        raw = request.query.get("agentid", "")
        if not raw.isdecimal():
            return _error(40056, "invalid agentid")
        if int(raw) != self.sim.agent_id:
            # The access token belongs to the app whose Secret fetched it.
            return _error(301002, "not allow operate another agent with this accesstoken.")
        return web.json_response({
            "errcode": 0, "errmsg": "ok", "agentid": self.sim.agent_id, "name": self.name,
            "square_logo_url": "", "description": "", "close": int(self.closed),
            "allow_userinfos": {"user": [{"userid": u} for u in sorted(self.users)]},
            "allow_partys": {"partyid": sorted(self.departments)},
            "allow_tags": {"tagid": sorted(self.tags)},
            "redirect_domain": "", "report_location_flag": 0, "isreportenter": 0, "home_url": ""})
