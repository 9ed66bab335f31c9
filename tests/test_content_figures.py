"""Content in the figures (issue 16) end to end through the simulator: one item's funnel (`统计 素材 N`)
by the task funnel's definitions, the top-content board in `统计`, the funnel export by content, and
`roi` crediting the content item a won lead's touches came through."""
import aiohttp
from sqlalchemy import select

from bot.app import CLICKS, DB
from store.models import Click, Lead, TrackedLink
from tests.conftest import Stack, eventually, visitor_cookie
from tests.test_content import add, code_in
from tests.test_csv_exports import fetch_csv
from tests.test_landing import GOOD, lead_notice_reached, open_form
from tests.test_links import BROWSER


async def click(stack: Stack, code: str, visitor: str, user_agent: str = BROWSER) -> aiohttp.ClientSession:
    """A visitor (their own signed cookie) follows the link; the session stays open for a form."""
    http = aiohttp.ClientSession(headers={"User-Agent": user_agent, "Cookie": visitor_cookie(stack.config, visitor)},
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(f"{stack.bot_url}/t/{code}", allow_redirects=False) as response:
        assert response.status == 302
    return http


async def copy_clicked_and_a_lead(stack: Stack) -> tuple[int, int]:
    """mkt1 adds an item; p1 takes a copy; two visitors and a bot follow it; the first visitor fills
    in the form. The item's id and the lead's."""
    item = await add(stack, "newcontent 2026 whitepaper | https://brand.example/wp | case")
    _, text = await stack.ask("p1", f"content {item}", expect=2)
    code = code_in(text)
    first, second, bot = (await click(stack, code, "a" * 20), await click(stack, code, "b" * 20),
                          await click(stack, code, "c" * 20, "facebookexternalhit/1.1"))
    try:
        token = await open_form(stack, first, code)
        async with first.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "csrf": token}) as response:
            assert response.status == 200 and "提交成功" in await response.text()
    finally:
        for http in (first, second, bot):
            await http.close()

    async def all_clicks() -> list[Click]:
        await stack.bot[CLICKS].flush_all()
        async with stack.bot[DB].session() as session:
            link = (await session.scalars(select(TrackedLink).where(TrackedLink.code == code))).one()
            found = list(await session.scalars(select(Click).where(Click.link_id == link.id)))
        return found if len(found) == 3 else []

    clicks = await eventually(all_clicks)
    assert sorted((c.is_bot, c.is_unique) for c in clicks) == [(False, True), (False, True), (True, True)]
    async with stack.bot[DB].session() as session:
        [lead] = await session.scalars(select(Lead).join(TrackedLink, TrackedLink.id == Lead.link_id)
                                       .where(TrackedLink.code == code))
    assert (lead.task_id, lead.owner_id is not None) == (None, True)  # the sharer keeps it
    await lead_notice_reached(stack, "p1")  # (so no later question of p1's takes it for its answer)
    return item, lead.id


async def test_one_items_funnel_the_overview_and_the_export(api: tuple[Stack, aiohttp.ClientSession]) -> None:
    stack, http = api
    item, _ = await copy_clicked_and_a_lead(stack)
    text, _ = await stack.ask("mkt1", f"统计 素材 {item}", expect=2)
    lines = text.splitlines()
    assert lines[0].endswith(f" · 素材 #{item} 2026 whitepaper")
    # No task card is a content item's: the people reached are those who took a copy.
    assert "触达 1 人" in lines[1] and "分享 1 人" in lines[1] and "独立点击 2" in lines[1] and "线索 1" in lines[1]
    assert "分享 1 次" in lines[2] and "点击 2（机器访问 1 未计入）" in lines[2]
    [english, _] = await stack.ask("admin1", f"report content:{item} month", expect=2)
    assert f"content #{item} 2026 whitepaper" in english.splitlines()[0] and "unique clicks 2" in english

    overview, _ = await stack.ask("mkt1", "统计", expect=2)
    assert f"素材排行（独立点击）：1. #{item} 2026 whitepaper 2（复制 1，线索 1） · 单个素材：统计 素材 N" in overview
    mine, _ = await stack.ask("p1", "report", expect=2)  # partner staff: their company's copies, no staff hint
    assert f"Content by unique clicks: 1. #{item} 2026 whitepaper 2 (copies 1, leads 1)" in mine
    assert "report content N" not in mine
    theirs, _ = await stack.ask("p2", "report", expect=2)
    assert "Content by" not in theirs  # Blue Ocean took no copy
    # A task's figures never include a content copy's.
    await stack.ask("mkt1", "newtask Spring | https://brand.example/spring")
    task_report = (await stack.ask("admin1", "report task 1", expect=2))[0]
    assert "#1 Spring" in task_report and " 0 share(s) " in task_report and "Content by" not in task_report

    total, row = await fetch_csv(http, "/api/stats/funnel?period=month&by=content&format=csv")
    assert (row["scope"], row["id"], row["name"]) == ("content", str(item), "2026 whitepaper")
    assert (row["shares"], row["unique_clicks"], row["bot_clicks"], row["leads"], row["taken"]) == ("1", "2", "1", "1", "1")
    assert (total["shares"], total["unique_clicks"], total["leads"]) == ("1", "2", "1")
    async with http.get("/api/stats/funnel?by=nothing") as response:
        assert response.status == 400 and "partner, task or content" in await response.text()


async def test_partners_are_refused_and_unknown_items_explained(stack: Stack) -> None:
    item = await add(stack, "newcontent Deck | https://brand.example/deck")
    [refused] = await stack.ask("p1", f"统计 素材 {item}")
    assert refused == "抱歉：单个素材的数据（统计 素材 N）仅限市场人员和管理员查看。"
    [refused] = await stack.ask("p2", f"report content {item}")
    assert refused == "Sorry: one content item's figures (report content N) are for marketers and admins only."
    [unknown] = await stack.ask("mkt1", "report content 99")
    assert unknown.startswith("there is no content #99; send content to see the library.\nUsage: report ")
    [unknown] = await stack.ask("mkt1", "统计 素材 99")
    assert unknown.startswith("没有素材 #99；发送“素材”查看素材库。\n用法：统计 ")
    [bad] = await stack.ask("mkt1", "report content five")
    assert "Usage: report" in bad


async def test_roi_credits_the_content_item(api: tuple[Stack, aiohttp.ClientSession]) -> None:
    stack, http = api
    item, lead_id = await copy_clicked_and_a_lead(stack)
    [won] = await stack.ask("p1", f"won {lead_id} 12000")
    assert "12,000" in won or "12000" in won, won
    [roi] = await stack.ask("mkt1", "roi")
    assert f"By content:\n• #{item} 2026 whitepaper ¥12,000" in roi
    assert "By partner:\n• 星河科技 ¥12,000" in roi and "By task:" not in roi
    rows = await fetch_csv(http, "/api/stats/attribution?model=first&period=month&format=csv")
    assert {"kind": "content", "id": str(item), "name": "2026 whitepaper", "credited": "12000.00", "cost": "", "roi": ""} in rows
    [zh] = await stack.ask("admin1", "归因 首次")
    assert f"按素材：\n• #{item} 2026 whitepaper ¥12,000" in zh
