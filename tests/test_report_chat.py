"""report / 统计 and roi / 归因 in chat: numbers that match the data, a chart image, who sees what."""
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.app import DB
from store import links as link_store
from store.members import get_member
from store.models import Lead, LeadEvent, LeadTouch, OutboxMessage, PointsEntry, Share, Task, TrackedLink, utcnow
from store.tasks import TASK_CARD
from tests.conftest import Stack

# "this month", "yesterday" and "tomorrow" at the month's and year's edges
edges = pytest.mark.clock_edges


async def programme(stack: Stack) -> dict[str, int]:
    """Task #1 (cost 1,000): p1 (星河科技) 3 human unique clicks + 1 bot, p2 (Blue Ocean) 1 click.
    Lead A (p1's link, won 9,000, touched by p1 then p2), lead B (p2's link, new)."""
    now = utcnow()
    async with stack.bot[DB].session() as session:
        p1, p2 = await get_member(session, "p1"), await get_member(session, "p2")
        task = Task(title="双十二", target_url="https://brand.example", status="active", cost=Decimal(1000))
        session.add(task)
        await session.flush()
        l1 = TrackedLink(code="c1", task_id=task.id, member_id=p1.id, channel="link")
        l2 = TrackedLink(code="c2", task_id=task.id, member_id=p2.id, channel="poster")
        session.add_all([l1, l2, Share(task_id=task.id, member_id=p1.id, channel="link", created_at=now)])
        await session.flush()
        clicks = [{"event_id": f"e{i}", "link_id": link.id, "at": now - timedelta(minutes=5), "visitor_id": f"v{i}",
                   "ip_hash": "h", "user_agent": "", "referrer": "", "is_bot": bot, "is_unique": True}
                  for i, (link, bot) in enumerate([(l1, False), (l1, False), (l1, False), (l1, True), (l2, False)])]
        await link_store.insert_clicks(session, clicks, stack.config.server.timezone)
        won = Lead(name="甲", phone="13800000001", source="form:link", status="won", won_amount=Decimal(9000),
                   won_at=now, task_id=task.id, link_id=l1.id, partner_id=p1.partner_id, owner_id=p1.id, created_at=now)
        fresh = Lead(name="乙", phone="13800000002", source="form:poster", status="new", task_id=task.id,
                     link_id=l2.id, partner_id=p2.partner_id, created_at=now)
        session.add_all([won, fresh])
        await session.flush()
        session.add_all([LeadEvent(lead_id=won.id, kind="assigned", member_id=p1.id, at=now),
                         LeadTouch(lead_id=won.id, link_id=l1.id, kind="click", at=now - timedelta(hours=2)),
                         LeadTouch(lead_id=won.id, link_id=l2.id, kind="click", at=now - timedelta(hours=1))])
        return {"task": task.id}


@edges
async def test_admin_report_has_the_funnel_leaders_and_a_chart(stack: Stack) -> None:
    await programme(stack)
    uploads = stack.sim.api_calls["media/upload"]
    text, _ = await stack.ask("admin1", "统计", expect=2)
    # People, then leads: each step a share of the one before; visitors and leads as labelled multipliers.
    assert text.splitlines()[1] == ("触达 1 人 → 分享 1 人（100%） → 独立点击 4（每位分享者带来 4 次） → "
                                    "线索 2（每百次独立点击 50 条） → 已跟进 1（50%） → 成交 1（100%）")
    assert "本期成交 1 单，成交额 ¥9,000" in text and "点击 4（机器访问 1 未计入）" in text
    assert "伙伴排行（独立点击）：1. 星河科技 3 · 2. Blue Ocean 1" in text
    assert "成员排行（独立点击）：1. 张伟 3 · 2. Li Na 1" in text
    image = stack.sim.bot_messages("admin1")[-1]
    assert image.msgtype == "image" and stack.sim.api_calls["media/upload"] == uploads + 1
    chart = Image.open(io.BytesIO(stack.sim.media[image.body["media_id"]][0]))
    assert chart.format == "PNG" and chart.width == 1080

    [task_text, _] = await stack.ask("mkt1", "report task 1 week", expect=2)
    assert "#1 双十二" in task_text.splitlines()[0] and "shared 1" in task_text
    [member_text, _] = await stack.ask("admin1", "report member p1", expect=2)
    assert "张伟" in member_text.splitlines()[0]
    assert member_text.splitlines()[1] == ("reached 1 → shared 1 (100%) → unique clicks 3 (3 per sharer) → "
                                           "leads 1 (33.3 per 100 unique clicks) → taken on 1 (100%) → won 1 (100%)")


async def test_a_partner_sees_only_their_own_company(stack: Stack) -> None:
    await programme(stack)
    text, _ = await stack.ask("p2", "统计", expect=2)
    assert "Blue Ocean" in text.splitlines()[0]
    assert "独立点击 1" in text.splitlines()[1] and "线索 1" in text.splitlines()[1]
    assert "星河科技" not in text and "张伟" not in text and "¥9,000" not in text
    [refused] = await stack.ask("p2", "统计 伙伴 星河科技")
    assert refused == "抱歉：您只能查看本公司的数据。" or "只能查看本公司" in refused
    [refused] = await stack.ask("p2", "统计 成员 p1")  # a person at another company
    assert "没有您可查看的成员 p1" in refused
    [refused] = await stack.ask("p2", "归因")
    assert "归因" in refused and "¥" not in refused
    assert "归因" not in text  # no pointer to a command partner staff may not use


async def test_a_partner_sees_only_tasks_their_company_got(stack: Stack) -> None:
    """report task N answers like task N: no title of a task another company got."""
    ids = await programme(stack)
    [refused] = await stack.ask("p2", f"统计 任务 {ids['task']}")
    assert f"没有属于您的任务 #{ids['task']}" in refused and "双十二" not in refused
    [same] = await stack.ask("p2", f"任务 {ids['task']}")
    assert "双十二" not in same
    async with stack.bot[DB].session() as session:  # a colleague of p2's got the card: now the company may look
        session.add(OutboxMessage(channel="wecom", recipient="p2", kind="card", payload={}, purpose=TASK_CARD,
                                  task_id=ids["task"], status="sent", sent_at=utcnow()))
    text, _ = await stack.ask("p2", f"统计 任务 {ids['task']}", expect=2)
    assert "双十二" in text.splitlines()[0] and "Blue Ocean" in text.splitlines()[0]


@edges
async def test_roi_per_model(stack: Stack) -> None:
    await programme(stack)
    [linear] = await stack.ask("admin1", "归因 线性")
    assert linear.splitlines()[0] == f"💰 归因 · 线性 · {linear.splitlines()[0].split(' · ')[2].split('：')[0]}：成交 1 单，¥9,000（无追踪触点：¥0）"
    assert "• #1 双十二 ¥9,000（成本 ¥1,000，ROI +800%）" in linear
    assert "• 星河科技 ¥4,500" in linear and "• Blue Ocean ¥4,500" in linear
    [first] = await stack.ask("admin1", "roi first")
    assert "• 星河科技 ¥9,000" in first and "Blue Ocean" not in first
    [last] = await stack.ask("admin1", "roi last")
    assert "• Blue Ocean ¥9,000" in last


@pytest.mark.parametrize("text, expected", [
    ("report soon", "“soon” is not a period"),
    ("report task x", "“x” is not a number"),
    ("report task 99", "there is no task #99"),
    ("report task 0", "there is no task #0"),
    ("report partner Nobody", "there is no partner called Nobody"),
    ("report partner", "give the partner's name"),
    ("report member", "give the member's user id"),
    ("report member nobody", "there is no member nobody"),
    ("report 2026-13-01", "is not a period"),
    ("report 2026-11-10..2026-11-01", "ends before it starts"),
    ("roi sideways", "“sideways” is not a model"),
    ("roi linear 2020-01-01..2026-01-01", "at most 366 days"),
    ("report 0001-01-01", "a period must lie between 2000-01-01 and 2100-12-31"),
    ("report 9999-12-31", "a period must lie between 2000-01-01 and 2100-12-31"),
    ("统计 9999-12-31", "时间段须在 2000-01-01 至 2100-12-31 之间"),
    ("roi u 9999-12-31", "a period must lie between 2000-01-01 and 2100-12-31"),
])
async def test_bad_report_input(stack: Stack, text: str, expected: str) -> None:
    [reply] = await stack.ask("admin1", text)
    assert expected in reply and "Traceback" not in reply


@edges
async def test_daily_digest_goes_to_admins_once_a_day(stack: Stack) -> None:
    import asyncio
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from bot.jobs import send_daily_digest

    await programme(stack)
    zone = ZoneInfo(stack.config.server.timezone)
    tomorrow = utcnow().astimezone(zone).date() + timedelta(days=1)
    early = datetime.combine(tomorrow, time(stack.config.stats.digest_hour - 1, 30), tzinfo=zone)
    assert await send_daily_digest(stack.bot[DB], stack.config, now=early) == 0  # before the hour: not yet
    on_time = datetime.combine(tomorrow, time(stack.config.stats.digest_hour, 5), tzinfo=zone)
    sent = await asyncio.gather(*(send_daily_digest(stack.bot[DB], stack.config, now=on_time) for _ in range(3)))
    assert sorted(sent) == [0, 0, 1]  # one admin, once, whichever instance got there first
    [digest] = [m.body["content"] for m in await stack.sim.wait_for_bot_messages("admin1", 1)]
    assert digest.startswith(f"📊 昨日简报 {tomorrow - timedelta(days=1)}")
    assert "分享 1 人（100%） → 独立点击 4（每位分享者带来 4 次） → 线索 2（每百次独立点击 50 条）" in digest and "1. 星河科技 3 · 2. Blue Ocean 1" in digest
    later = on_time + timedelta(hours=5)
    assert await send_daily_digest(stack.bot[DB], stack.config, now=later) == 0
    assert not stack.sim.bot_messages("p1")  # partners do not get it


async def test_export_funnel_and_attribution_as_json_and_csv(api_stack: Stack) -> None:
    import csv

    import aiohttp

    from tests.conftest import admin_http
    stack = api_stack
    await programme(stack)
    async with admin_http(stack) as http:
        async with http.get("/api/stats/funnel", params={"by": "partner", "period": "30d"}) as r:
            body = await r.json()
        total, *partners = body["rows"]
        assert (total["unique_clicks"], total["bot_clicks"], total["leads"], total["won"], total["revenue"]) == (4, 1, 2, 1, "9000.00")
        assert {p["name"]: p["unique_clicks"] for p in partners} == {"星河科技": 3, "Blue Ocean": 1}
        async with http.get("/api/stats/attribution", params={"model": "u", "format": "csv"}) as r:
            assert r.headers["Content-Type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(await r.text())))
        assert [(row["kind"], row["name"], row["credited"]) for row in rows] == [
            ("task", "双十二", "9000.00"), ("partner", "星河科技", "4500.00"), ("partner", "Blue Ocean", "4500.00"),
            ("unattributed", "", "0")]
        assert rows[0]["roi"] == "8.0000"
        for path, params in (("/api/stats/funnel", {"period": "2026-13-01"}), ("/api/stats/funnel", {"by": "region"}),
                             ("/api/stats/funnel", {"period": "9999-12-31"}), ("/api/stats/funnel", {"period": "0001-01-01"}),
                             ("/api/stats/attribution", {"period": "9999-12-31"}),
                             ("/api/stats/funnel", {"format": "xml"}), ("/api/stats/attribution", {"model": "w"})):
            async with http.get(path, params=params) as r:
                assert r.status == 400 and (await r.json())["field"] in params
                if params.get("period", "").startswith(("0001", "9999")):
                    assert "between 2000-01-01 and 2100-12-31" in (await r.json())["error"]
    async with aiohttp.ClientSession(base_url=stack.bot_url) as anonymous:
        async with anonymous.get("/api/stats/funnel") as r:
            assert r.status == 401


@edges
async def test_a_pool_lead_i_won_counts_in_me_report_and_points(stack: Stack) -> None:
    """A lead claimed from the pool and won is paid by the ledger: me, the company's report and
    points agree on it; being handed a lead as its sharer is not a claim."""
    from store import points
    from tests.test_pool import add_leads

    await programme(stack)  # p1 holds lead A (from p1's own link, assigned as its sharer), won 9,000
    await add_leads(stack.config.database.url)
    async with stack.bot[DB].session() as session:
        pool_lead = await session.scalar(select(Lead.id).where(Lead.name == "赵总"))
    assert "已归您" in (await stack.ask("p1", f"领取 {pool_lead}"))[0]
    assert "成交" in (await stack.ask("p1", f"成交 {pool_lead} 3000"))[0]
    [me] = await stack.ask("p1", "我的")
    assert "通过您的链接带来线索 1 条，从线索池领取 1 条，成交 2 单（¥12,000" in me
    text, _ = await stack.ask("p1", "统计", expect=2)
    assert "本期成交 2 单，成交额 ¥12,000" in text
    async with stack.bot[DB].session() as session:
        await points.accrue(session, stack.config.points, stack.config.server.timezone)
        p1 = await get_member(session, "p1")
        wins = await session.scalar(select(func.count()).select_from(PointsEntry).where(
            PointsEntry.member_id == p1.id, PointsEntry.kind == "won"))
    assert wins == 2
