"""GET /join/<code>: what the invite poster's QR code opens. It tells the person what to send in
WeCom (joining happens in chat, where the bot knows who they are), or why the code no longer works."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.config import Config
from bot.web.links import page
from handlers import pages
from store import onboarding
from store.models import utcnow
from store.partners import partner_by_id


def invite_routes(config: Config, db_of: Any) -> list[web.RouteDef]:
    async def invite_page(request: web.Request) -> web.Response:
        code = onboarding.normalize_code(request.match_info["code"])
        if not code.isalnum() or len(code) > 16:
            return page(404, pages.INVITE_INVALID)
        async with db_of(request).session() as session:
            invite = await onboarding.find_invite(session, code)
            problem = onboarding.why_unusable(invite, code, utcnow(), config.server.timezone)
            if invite is None or problem is not None:
                status = 404 if invite is None else 410
                return page(status, pages.invite_unusable(problem))
            partner = await partner_by_id(session, invite.partner_id)
        name = partner.name if partner else ""
        return page(200, pages.how_to_join(name, invite.code))

    return [web.get("/join/{code}", invite_page)]
