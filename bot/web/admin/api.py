"""Admin HTTP API (bearer token from [admin] api_token): tasks today; more domains join here."""
from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import web

from bot.config import Config
from bot.web.admin.common import Refused, aware_time, error, iso, json_body, path_id
from store import assignment
from store import leads as lead_store
from store import pool, pool_rules
from store import tasks as task_store
from store.members import active_partner_member
from store.models import AssignmentRule, Lead, Task
from store.partners import partner_by_name

log = logging.getLogger(__name__)

EDITABLE = task_store.TASK_FIELDS


async def _lookup(session: Any, find: Any, raw: str) -> Any:
    key = path_id(raw)
    return None if key is None else await find(session, key)


async def _pool_id(session: Any, name: str, field: str | None, status: int = 422) -> int | None:
    """A pool named in a request: None for the public pool, else the partner's id (Refused if none)."""
    if name.lower() in lead_store.PUBLIC_POOL_WORDS:
        return None
    partner = await partner_by_name(session, name)
    if partner is None:
        raise Refused(status, f"no partner called {name!r}: use public or a partner's name", field)
    return partner.id


def admin_routes(config: Config, db_of: Any, client_of: Any) -> tuple[list[web.RouteDef], Any]:
    """The routes and the middleware that guards them. `db_of(request)` gives the Database,
    `client_of(request)` a salted hash of the client's address (logs never carry the address)."""
    token = config.admin.api_token

    @web.middleware
    async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        if not token:
            return error(503, "the admin API is disabled: set PARTNERBOT_ADMIN_API_TOKEN")
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            log.warning("admin API: refused a request without a valid token from client %s", client_of(request)[:16])
            return web.json_response({"error": "a valid bearer token is required"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="partnerbot"'})
        try:
            return await handler(request)
        except Refused as refused:
            return refused.response
        except task_store.InvalidTask as problem:  # a field the store will not keep (tasks, content)
            return error(422, problem.en, problem.field)

    async def body_of(request: web.Request) -> dict[str, Any]:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        unknown = sorted(set(body) - set(EDITABLE))
        if unknown:
            raise Refused(400, f"unknown field(s): {', '.join(unknown)}; known: {', '.join(EDITABLE)}", unknown[0])
        if any(not isinstance(body[k], str) for k in body if k not in ("deadline", "cost")) or \
                not isinstance(body.get("deadline", ""), (str, type(None))) or \
                not isinstance(body.get("cost", ""), (str, int, float, type(None))) or isinstance(body.get("cost"), bool):
            raise Refused(400, "fields must be strings (deadline: ISO 8601 or null; cost: an amount or null)")
        return body

    async def task_json(session: Any, task: Task) -> dict[str, Any]:
        return {"id": task.id, "title": task.title, "url": task.target_url, "description": task.description,
                "template": task.poster_template, "status": task.status,
                "cost": str(task.cost) if task.cost is not None else None,
                "deadline": iso(task.deadline),
                "created_at": iso(task.created_at),
                "deliveries": await task_store.delivery_progress(session, task.id),
                "shared_by": await task_store.share_count(session, task.id)}

    async def create(request: web.Request) -> web.Response:
        body = await body_of(request)
        async with db_of(request).session() as session:
            task = await task_store.create_task(
                session, title=body.get("title", ""), url=body.get("url", ""), creator=None,
                description=body.get("description", ""), template=body.get("template", "classic"),
                deadline=aware_time(body.get("deadline"), "deadline"), status=body.get("status", "draft"),
                cost=task_store.check_cost(body.get("cost")), templates_dir=config.posters.templates_dir)
            return web.json_response(await task_json(session, task), status=201)

    async def list_(request: web.Request) -> web.Response:
        async with db_of(request).session() as session:
            tasks = await task_store.recent_tasks(session, 200)
            return web.json_response({"tasks": [await task_json(session, t) for t in tasks]})

    def task_id_of(request: web.Request) -> int | None:
        raw = request.match_info["task_id"]
        return path_id(raw)

    async def get(request: web.Request) -> web.Response:
        task_id = task_id_of(request)
        async with db_of(request).session() as session:
            task = await task_store.get_task(session, task_id) if task_id else None
            if task is None:
                return error(404, "no such task")
            return web.json_response(await task_json(session, task))

    async def edit(request: web.Request) -> web.Response:
        body = await body_of(request)
        return await _change(request, body)

    async def end(request: web.Request) -> web.Response:
        return await _change(request, {"status": "ended"})

    async def _change(request: web.Request, body: dict[str, Any]) -> web.Response:
        task_id = task_id_of(request)
        async with db_of(request).session() as session:
            task = await task_store.get_task(session, task_id) if task_id else None
            if task is None:
                raise Refused(404, "no such task")
            changes = {**body, "deadline": aware_time(body["deadline"], "deadline")} if "deadline" in body else body
            await task_store.change_task(session, task, changes, templates_dir=config.posters.templates_dir)
            return web.json_response(await task_json(session, task))

    async def create_lead(request: web.Request) -> web.Response:
        body = await json_body(request)
        fields = ("name", "company", "phone", "region", "industry", "source", "pool")
        if not isinstance(body, dict) or any(not isinstance(body.get(k, ""), str) for k in fields):
            return error(400, f"the body must be a JSON object of strings: {', '.join(fields)}")
        unknown = sorted(set(body) - set(fields))
        if unknown:
            return error(400, f"unknown field(s): {', '.join(unknown)}", unknown[0])
        form, problems = lead_store.validate_form(body, consent=True)
        if form is None:
            field, message = next(iter(problems.items()))
            return error(422, message.split(" / ")[-1], field)
        async with db_of(request).session() as session:
            await _pool_id(session, body.get("pool", ""), "pool")  # the import looks it up by name again
            row = lead_store.LeadRow(0, form, (body.get("source") or "api")[:32], body.get("pool", ""))
            created, _ = await lead_store.import_leads(session, [row], book=await pool_rules.rule_book(session, config.pool_rules))
            if not created:
                raise Refused(409, "a lead with this phone and company already exists", "phone")
            lead = await lead_store.get_lead(session, created[0])
            return web.json_response(lead_json(lead, []), status=201)

    def lead_json(lead: Lead, events: list[Any]) -> dict[str, Any]:
        # The admin API is the admins' view: full phone, as in chat for admins.
        return {"id": lead.id, "name": lead.name, "company": lead.company, "phone": lead.phone,
                "region": lead.region, "industry": lead.industry, "source": lead.source, "status": lead.status,
                "owner_id": lead.owner_id, "pool_partner_id": lead.pool_partner_id,
                "won_amount": str(lead.won_amount) if lead.won_amount is not None else None,
                "history": [{"kind": e.kind, "member_id": e.member_id, "note": e.note,
                             "at": iso(e.at)} for e in events]}

    async def get_lead(request: web.Request) -> web.Response:
        raw = request.match_info["lead_id"]
        async with db_of(request).session() as session:
            lead = await _lookup(session, lead_store.get_lead, raw)
            if lead is None:
                return error(404, "no such lead")
            return web.json_response(lead_json(lead, await pool.history(session, lead.id)))

    async def list_rules(request: web.Request) -> web.Response:
        async with db_of(request).session() as session:
            return web.json_response({"rules": [rule_json(r) for r in await assignment.active_rules(session)]})

    def rule_json(rule: AssignmentRule) -> dict[str, Any]:
        return {"id": rule.id, "priority": rule.priority, "region": rule.region, "industry": rule.industry,
                "partner_id": rule.partner_id, "min_tier": rule.min_tier}

    async def add_rule(request: web.Request) -> web.Response:
        body = await json_body(request)
        if not isinstance(body, dict) \
                or not all(isinstance(body.get(k, ""), str) and len(body.get(k, "")) <= 32
                           for k in ("partner", "region", "industry", "min_tier")) \
                or not isinstance(body.get("priority", 100), int) or isinstance(body.get("priority", 100), bool):
            return error(400, "give partner (name) or min_tier, and optionally region, industry (≤ 32 characters), "
                               "priority (integer)")
        if body.get("min_tier", "registered") not in pool_rules.TIERS:
            return error(422, f"min_tier must be one of {', '.join(pool_rules.TIERS)}", "min_tier")
        async with db_of(request).session() as session:
            partner_id = None
            if body.get("partner"):  # without a partner, the rule picks partners by industry and tier
                partner = await partner_by_name(session, body["partner"])
                if partner is None:
                    return error(422, f"no partner called {body['partner']!r}", "partner")
                partner_id = partner.id
            rule = await assignment.add_rule(session, priority=body.get("priority", 100),
                                             region=body.get("region", "").strip(),
                                             industry=body.get("industry", "").strip(), partner_id=partner_id,
                                             min_tier=body.get("min_tier", "registered"))
            return web.json_response(rule_json(rule), status=201)

    async def remove_rule(request: web.Request) -> web.Response:
        raw = request.match_info["rule_id"]
        async with db_of(request).session() as session:
            rule = await _lookup(session, assignment.get_rule, raw)
            if rule is None or not rule.active:
                return error(404, "no such rule")
            await assignment.retire_rule(session, rule)
            return web.json_response({"id": rule.id, "active": False})

    async def assign_lead(request: web.Request) -> web.Response:
        """Move a lead: {"pool": ""} public, {"pool": "PARTNER"} that partner's pool, {"member": "USERID"}."""
        raw = request.match_info["lead_id"]
        body = await json_body(request)
        if not isinstance(body, dict) or len(body) != 1 or not isinstance(next(iter(body.values()), None), str) \
                or next(iter(body)) not in ("pool", "member"):
            return error(400, 'give exactly one of {"pool": "PARTNER or empty"} or {"member": "USERID"}')
        async with db_of(request).session() as session:
            lead = await _lookup(session, lead_store.get_lead, raw)
            if lead is None:
                raise Refused(404, "no such lead")
            if lead.status in ("won", "lost"):
                raise Refused(422, f"lead is {lead.status}", "status")
            if "member" in body:
                member = await active_partner_member(session, body["member"])
                if member is None:
                    raise Refused(422, f"no active partner member {body['member']!r}", "member")
                await pool.move(session, lead, member=member)
            else:
                await pool.move(session, lead, partner_id=await _pool_id(session, body["pool"], "pool"))
            return web.json_response(lead_json(lead, await pool.history(session, lead.id)))

    def pool_json(view: pool.PoolView) -> dict[str, Any]:
        return {"pool": view.name, "rules": {key: getattr(view.rules, key) for key in pool_rules.EDITABLE},
                "overrides": view.overrides}

    async def list_pools(request: web.Request) -> web.Response:
        """Every pool with the rules in force and which of them an admin set (the rest: [pool] config)."""
        async with db_of(request).session() as session:
            return web.json_response({"pools": [pool_json(view) for view in await pool.pools_overview(session, config.pool_rules)]})

    async def set_pool_rules(request: web.Request) -> web.Response:
        """PATCH {"max_held": 50, "idle_days": null}: set some of one pool's rules (null = back to config)."""
        name = request.match_info["pool"]
        body = await json_body(request)
        if not isinstance(body, dict) or not body:
            return error(400, f"give an object of rules to set: {', '.join(pool_rules.EDITABLE)}")
        async with db_of(request).session() as session:
            partner_id = await _pool_id(session, name, None, status=404)  # the path names the pool
            try:
                view = await pool.change_rules(session, config.pool_rules, name, partner_id, body)
            except pool_rules.BadRules as bad:
                return error(422, str(bad), bad.field)
            log.info("pool %s rules changed: %s", name, body)
            return web.json_response(pool_json(view))

    routes = [
        web.get("/api/pools", list_pools),
        web.patch("/api/pools/{pool}/rules", set_pool_rules),
        web.post("/api/leads/{lead_id}/assign", assign_lead),
        web.get("/api/assignment-rules", list_rules),
        web.post("/api/assignment-rules", add_rule),
        web.delete("/api/assignment-rules/{rule_id}", remove_rule),
        web.post("/api/leads", create_lead),
        web.get("/api/leads/{lead_id}", get_lead),
        web.post("/api/tasks", create),
        web.get("/api/tasks", list_),
        web.get("/api/tasks/{task_id}", get),
        web.patch("/api/tasks/{task_id}", edit),
        web.post("/api/tasks/{task_id}/end", end),
    ]
    return routes, require_token
