"""GET /join/<code>: what the invite poster's QR code opens. It tells the person what to send in
WeCom (joining happens in chat, where the bot knows who they are), or why the code no longer works."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.config import Config
from bot.web.links import page
from store import onboarding
from store.models import utcnow
from store.partners import partner_by_id


def invite_routes(config: Config, db_of: Any) -> list[web.RouteDef]:
    async def invite_page(request: web.Request) -> web.Response:
        code = onboarding.normalize_code(request.match_info["code"])
        if not code.isalnum() or len(code) > 16:
            return page(404, "邀请码无效 / Invalid invite", "请核对二维码或邀请码。Please check the code.")
        async with db_of(request).session() as session:
            invite = await onboarding.find_invite(session, code)
            problem = onboarding.why_unusable(invite, code, utcnow(), config.server.timezone)
            if invite is None or problem is not None:
                status = 404 if invite is None else 410
                return page(status, "邀请码不可用 / Invite not usable",
                            f"{problem.zh if problem else ''}。{problem.en if problem else ''}.")
            partner = await partner_by_id(session, invite.partner_id)
        name = partner.name if partner else ""
        return page(200, f"加入 {name} / Join {name}",
                    f"请在企业微信中向伙伴助手发送：加入 {invite.code}\n"
                    f"In WeCom, send this to the partner bot: join {invite.code}")

    return [web.get("/join/{code}", invite_page)]
