"""Stats export for admins (behind the admin API's bearer token): the funnel and the attribution
tables as JSON or CSV (`?format=csv`), for a period (`?period=month`, `2026-11-01..2026-11-15`)."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.config import Config
from bot.web.admin.common import Refused, iso
from bot.web.csv_export import csv_text
from store import attribution, points, stats
from store import tasks as task_store
from store.content import content_ids_and_titles
from store.models import utcnow
from store.partners import partner_by_name, partner_ids_and_names

FUNNEL_COLUMNS = ["scope", "id", "name", "reached", "sharers", "shares", "deliveries", "clicks", "unique_clicks",
                  "bot_clicks", "held_clicks", "leads", "taken", "won", "held_leads", "deals", "revenue"]
ATTRIBUTION_COLUMNS = ["kind", "id", "name", "credited", "cost", "roi"]
STATEMENT_COLUMNS = ["member", "name", "kind", "basis", "points", "commission", "at"]


def _table(request: web.Request, name: str, columns: list[str], rows: list[dict[str, Any]],
           meta: dict[str, Any]) -> web.Response:
    """Rows keep amounts as Decimal, so the CSV writes them as numbers (never neutralised as
    text) while JSON keeps giving them as strings, exact to the cent."""
    if request.query.get("format", "json") == "csv":
        return web.Response(text=csv_text(columns, rows), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    as_json = [{key: str(value) if isinstance(value, Decimal) else value for key, value in row.items()} for row in rows]
    return web.json_response({**meta, "rows": as_json})


def stats_routes(config: Config, db_of: Any) -> list[web.RouteDef]:
    zone = config.server.timezone

    def period_of(request: web.Request) -> stats.Period:
        today = datetime.now(ZoneInfo(zone)).date()
        try:
            return stats.parse_period(request.query.get("period", "month"), zone, today)
        except stats.BadPeriod as bad:
            raise Refused(400, str(bad), "period") from None

    def check_format(request: web.Request) -> None:
        if request.query.get("format", "json") not in ("json", "csv"):
            raise Refused(400, "format must be json or csv", "format")

    async def funnel(request: web.Request) -> web.Response:
        """?by=partner|task|content adds one row per partner, task or content item after the total."""
        check_format(request)
        period, by = period_of(request), request.query.get("by", "")
        if by not in ("", "partner", "task", "content"):
            raise Refused(400, "by must be partner, task or content", "by")
        async with db_of(request).session() as session:
            scopes: list[tuple[str, int | None, str, stats.Scope]] = [("all", None, "", stats.Scope())]
            if by == "partner":
                scopes += [("partner", pid, name, stats.Scope(partner_id=pid)) for pid, name in
                           await partner_ids_and_names(session)]
            elif by == "task":
                scopes += [("task", tid, title, stats.Scope(task_id=tid)) for tid, title in
                           await task_store.published_tasks(session)]
            elif by == "content":
                scopes += [("content", cid, title, stats.Scope(content_id=cid)) for cid, title in
                           await content_ids_and_titles(session)]
            rows = [{"scope": kind, "id": key, "name": name, **(await stats.funnel(session, scope, period)).as_dict()}
                    for kind, key, name, scope in scopes]
        return _table(request, f"funnel-{period.first_day}-{period.last_day}", FUNNEL_COLUMNS, rows,
                      {"period": {"from": str(period.first_day), "to": str(period.last_day), "timezone": zone},
                       "generated_at": utcnow().isoformat()})

    async def attribution_table(request: web.Request) -> web.Response:
        model = attribution.MODEL_WORDS.get(request.query.get("model", "linear").lower())
        check_format(request)
        period = period_of(request)
        if model is None:
            raise Refused(400, f"model must be one of {', '.join(attribution.MODELS)}", "model")
        async with db_of(request).session() as session:
            result = await attribution.attribute(session, period, model)
        rows = [{"kind": "task", "id": task_id, "name": result.task_names.get(task_id, ""), "credited": amount,
                 "cost": result.task_costs[task_id] if result.task_costs.get(task_id) is not None else "",
                 "roi": "" if (rate := result.roi(task_id)) is None else Decimal(f"{rate:.4f}")}
                for task_id, amount in sorted(result.by_task.items())]
        rows += [{"kind": "partner", "id": pid, "name": result.partner_names.get(pid, "") if pid else "",
                  "credited": amount, "cost": "", "roi": ""}
                 for pid, amount in sorted(result.by_partner.items(), key=lambda kv: kv[0] or 0) if amount]
        rows += [{"kind": "content", "id": cid, "name": result.content_names.get(cid, ""), "credited": amount,
                  "cost": "", "roi": ""} for cid, amount in sorted(result.by_content.items()) if amount]
        rows.append({"kind": "unattributed", "id": "", "name": "", "credited": result.unattributed, "cost": "", "roi": ""})
        return _table(request, f"attribution-{model}-{period.first_day}-{period.last_day}", ATTRIBUTION_COLUMNS, rows,
                      {"model": model, "period": {"from": str(period.first_day), "to": str(period.last_day), "timezone": zone},
                       "won_leads": result.won_leads, "revenue": str(result.revenue)})

    async def statement(request: web.Request) -> web.Response:
        """?partner=NAME&month=2026-11: the partner's ledger entries of that month (what each member
        earned, and from which share, click day, lead or win), with totals."""
        check_format(request)
        month = request.query.get("month", "")
        try:
            first = date.fromisoformat(f"{month}-01")
        except ValueError:
            raise Refused(400, "month must be like 2026-11", "month") from None
        after = (first + timedelta(days=32)).replace(day=1)
        async with db_of(request).session() as session:
            partner = await partner_by_name(session, request.query.get("partner", ""))
            if partner is None:
                raise Refused(404, "no such partner", "partner")
            entries = await points.statement_entries(session, partner.id, first, after, zone)
        rows = [{"member": userid, "name": name, "kind": e.kind, "basis": e.basis, "points": e.points,
                 "commission": e.commission, "at": iso(e.at)} for e, userid, name in entries]
        return _table(request, f"statement-{partner.name}-{month}", STATEMENT_COLUMNS, rows, {
            "partner": partner.name, "month": month, "tier": partner.tier,
            "points": sum(r["points"] for r in rows),
            "commission": str(sum((e.commission for e, _, _ in entries), Decimal(0)))})

    return [web.get("/api/stats/funnel", funnel), web.get("/api/stats/attribution", attribution_table),
            web.get("/api/points/statement", statement)]
