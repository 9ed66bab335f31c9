"""Partners and invite codes through the admin API (the same rules as newpartner / invite in chat)."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.config import Config
from bot.web.admin.common import Refused, error, iso, json_body
from store import bindings, onboarding
from store.errors import Refusal
from store.members import USERID_PATTERN, get_member
from store.partners import partner_by_name, partners_by_name
from store.models import Invite, Partner

FIELDS = ("name", "region", "industries", "tier", "commission_rate")


def partner_json(partner: Partner) -> dict[str, Any]:
    return {"id": partner.id, "name": partner.name, "region": partner.region, "industries": partner.industries,
            "tier": partner.tier,
            "commission_rate": str(partner.commission_rate) if partner.commission_rate is not None else None}


def _rate(value: Any) -> None:
    try:
        onboarding.check_commission_rate(value)
    except onboarding.BadPartner as bad:
        raise Refused(422, bad.en, bad.field) from None


def _check(body: Any, creating: bool) -> dict[str, Any]:
    """Shapes and the fields that need no database; the store checks the rest."""
    if not isinstance(body, dict) or (not body and not creating):
        raise Refused(400, "the body must be a JSON object with some of: " + ", ".join(FIELDS), "body")
    unknown = sorted(set(body) - set(FIELDS) | ({"name"} & set(body) if not creating else set()))
    if unknown:
        raise Refused(400, f"unknown or fixed field(s): {', '.join(unknown)}", unknown[0])
    for key in ("name", "region", "tier"):
        if key in body and not isinstance(body[key], str):
            raise Refused(400, f"{key} must be a string", key)
    if "industries" in body and (not isinstance(body["industries"], list)
                                 or not all(isinstance(i, str) and i.strip() for i in body["industries"])):
        raise Refused(400, "industries must be a list of names", "industries")
    if "tier" in body and body["tier"] not in onboarding.TIERS:
        raise Refused(422, f"tier must be one of {', '.join(onboarding.TIERS)}", "tier")
    _rate(body.get("commission_rate"))
    return body


def partner_routes(config: Config, db_of: Any) -> list[web.RouteDef]:
    async def read(request: web.Request, creating: bool) -> dict[str, Any]:
        return _check(await json_body(request), creating)

    async def list_partners(request: web.Request) -> web.Response:
        async with db_of(request).session() as session:
            return web.json_response({"partners": [partner_json(p) for p in await partners_by_name(session)]})

    async def create(request: web.Request) -> web.Response:
        body = await read(request, creating=True)
        async with db_of(request).session() as session:
            try:
                partner = await onboarding.create_partner(session, body.get("name", ""), body.get("region", ""),
                                                          [i.strip() for i in body.get("industries", [])],
                                                          body.get("tier", "registered"), body.get("commission_rate"))
            except onboarding.BadPartner as bad:
                return error(409 if "already" in bad.en else 422, bad.en, bad.field)
            return web.json_response(partner_json(partner), status=201)

    async def edit(request: web.Request) -> web.Response:
        body = await read(request, creating=False)
        async with db_of(request).session() as session:
            partner = await partner_by_name(session, request.match_info["name"])
            if partner is None:
                return error(404, "no such partner")
            try:
                await onboarding.change_partner(session, partner, **body)
            except onboarding.BadPartner as bad:
                return error(422, bad.en, bad.field)
            return web.json_response(partner_json(partner))

    async def new_invite(request: web.Request) -> web.Response:
        body = await json_body(request) if request.can_read_body else {}
        if not isinstance(body, dict) or any(not isinstance(body.get(k, 1), int) or isinstance(body.get(k), bool)
                                             for k in ("days", "uses")):
            return error(400, "days and uses are whole numbers")
        async with db_of(request).session() as session:
            partner = await partner_by_name(session, request.match_info["name"])
            if partner is None:
                return error(404, "no such partner")
            try:
                invite = await onboarding.create_invite(session, partner, days=body.get("days", 7),
                                                        uses=body.get("uses", 50), created_by=None)
            except Refusal as bad:
                return error(422, bad.en, "days" if "days" in bad.en else "uses")
            return web.json_response(invite_json(invite), status=201)

    def invite_json(invite: Invite) -> dict[str, Any]:
        return {"code": invite.code, "url": f"{config.server.public_base_url.rstrip('/')}/join/{invite.code}",
                "uses": invite.uses, "max_uses": invite.max_uses, "expires_at": iso(invite.expires_at),
                "revoked": invite.revoked_at is not None}

    async def revoke(request: web.Request) -> web.Response:
        async with db_of(request).session() as session:
            try:
                return web.json_response(invite_json(await onboarding.revoke(session, request.match_info["code"])))
            except Refusal:
                return error(404, "no such invite code")

    async def binding_code(request: web.Request) -> web.Response:
        """A one-time code for someone outside WeCom to use the bot from the WeChat Official Account."""
        if not config.wechat.enabled:
            return error(409, "the WeChat Official Account is not configured ([wechat] app_id)")
        try:
            body = await request.json() if request.can_read_body else {}
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body must be JSON, e.g. {\"hours\": 72}", "body")
        hours = body.get("hours", config.wechat.binding_code_hours) if isinstance(body, dict) else None
        if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 24 * 30:
            return error(400, "hours is a whole number from 1 to 720", "hours")
        userid = request.match_info["userid"]
        if not USERID_PATTERN.fullmatch(userid):  # also keeps NUL bytes away from PostgreSQL
            return error(404, "no such active member")
        async with db_of(request).session() as session:
            member = await get_member(session, userid)
            if member is None:
                return error(404, "no such active member")
            code = await bindings.issue_code(session, member, hours=hours, by=None, push_there=True)
            return web.json_response({"code": code.code, "userid": member.userid, "expires_at": iso(code.expires_at),
                                      "send": f"绑定 {code.code}"}, status=201)

    return [web.get("/api/partners", list_partners), web.post("/api/partners", create),
            web.post("/api/members/{userid}/binding-code", binding_code),
            web.patch("/api/partners/{name}", edit), web.post("/api/partners/{name}/invites", new_invite),
            web.post("/api/invites/{code}/revoke", revoke)]
