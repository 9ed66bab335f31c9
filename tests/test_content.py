"""The content library end to end through the simulator (issue 16, first increment): marketers add
links, video links and talk scripts; partner staff list what their audience may use and take their own
tracked copy; retired, expired, out-of-audience and bad input get clear answers; content attached to a
task rides on its card (the admin API: tests/test_content_api.py)."""
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.app import CLICKS, DB
from store.models import Click, ContentItem, Share, TrackedLink, utcnow
from tests.conftest import Stack, eventually

BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.40"


async def add(stack: Stack, text: str, who: str = "mkt1") -> int:
    [reply] = await stack.ask(who, text)
    match = re.search(r"(?:Content|素材) #(\d+)", reply)
    assert match and ("added" in reply or "已添加" in reply), reply
    return int(match.group(1))


def code_in(text: str) -> str:
    match = re.search(r"/t/([A-Za-z0-9_-]+)", text)
    assert match, text
    return match.group(1)


async def stored_clicks(stack: Stack, link_id: int) -> list[Click]:
    # The redirect answers before its click is recorded: flush whatever has arrived so far.
    await stack.bot[CLICKS].flush_all()
    async with stack.bot[DB].session() as session:
        return list(await session.scalars(select(Click).where(Click.link_id == link_id)))


async def follow(stack: Stack, code: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(f"{stack.bot_url}/t/{code}", allow_redirects=False,
                            headers={"User-Agent": BROWSER}) as response:
            return response


async def test_partner_takes_a_tracked_copy_of_a_link_and_its_clicks_count_for_the_item(stack: Stack) -> None:
    item = await add(stack, "newcontent 2026 whitepaper | https://brand.example/wp?x=1 | case 制造")
    [listing] = await stack.ask("p1", "content")
    assert f"#{item} [article] 2026 whitepaper · #case #制造" in listing and f"content {item}" in listing
    [same] = await stack.ask("p1", "content 制造")
    assert f"#{item}" in same
    [none] = await stack.ask("p1", "content pricing")
    assert none == "No content with those tags."

    _, text = await stack.ask("p1", f"content {item}", expect=2)
    [message, _] = stack.sim.bot_messages("p1")[-2:]
    [article] = message.body["articles"]  # WeCom's news message: a link card that opens the URL
    url = article["url"]
    assert message.msgtype == "news" and article["title"] == "2026 whitepaper"
    code = code_in(url)
    assert url == f"{stack.config.server.public_base_url}/t/{code}" and url in text
    # Taking it again gives the same link and counts no second share.
    _, again = await stack.ask("p1", f"素材 {item}", expect=2)
    assert code_in(again) == code and again.startswith(f"您的素材 #{item} 专属链接")

    response = await follow(stack, code)
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc == "brand.example" and parse_qs(location.query)["utm_campaign"] == [f"content-{item}"]
    async with stack.bot[DB].session() as session:
        link = (await session.scalars(select(TrackedLink).where(TrackedLink.code == code))).one()
        assert (link.content_id, link.task_id) == (item, None)
    clicks = await eventually(lambda: stored_clicks(stack, link.id))
    assert len(clicks) == 1 and clicks[0].is_unique and not clicks[0].is_bot
    async with stack.bot[DB].session() as session:
        shares = list(await session.scalars(select(Share).where(Share.content_id == item)))
        assert [(s.member_id, s.task_id) for s in shares] == [(link.member_id, None)]
    [details] = await stack.ask("mkt1", f"content {item}")
    assert "1 member(s) took their copy." in details and "https://brand.example/wp?x=1" in details


async def test_video_links_and_filled_talk_scripts(stack: Stack) -> None:
    [video] = await stack.ask("mkt1", "新素材 产品演示 | https://www.bilibili.com/video/BV1xx | 视频")
    assert "（识别为视频链接）" in video
    script = await add(stack, "新话术 开场白 | 您好，我是{公司}的{姓名}，白皮书在这里：{链接}")
    [listing] = await stack.ask("p1", "素材")
    assert f"#{script} [话术] 开场白" in listing and "[视频] 产品演示" in listing
    note, filled = await stack.ask("p1", f"素材 {script}", expect=2)
    assert "复制下一条" in note
    code = code_in(filled)
    assert filled == f"您好，我是星河科技的张伟，白皮书在这里：{stack.config.server.public_base_url}/t/{code}"
    # A script has no page of its own: its link opens the sharer's sign-up form.
    response = await follow(stack, code)
    assert response.status == 302 and response.headers["Location"] == f"/l/{code}"
    english = await add(stack, "newscript Intro | Hi, {name} from {company} here: {link}")
    _, filled = await stack.ask("p2", f"content {english}", expect=2)
    assert filled.startswith("Hi, Li Na from Blue Ocean here: http")


async def test_audience_limits_who_may_list_and_take(stack: Stack) -> None:
    item = await add(stack, 'newcontent Blue only | https://brand.example/blue | | partner:"Blue Ocean"')
    [p1_list] = await stack.ask("p1", "content")
    assert p1_list == "No content for you yet."
    [refused] = await stack.ask("p1", f"content {item}")
    assert refused == f"Sorry: There is no content #{item} for you. Send content to see yours."
    [p2_list] = await stack.ask("p2", "content")
    assert f"#{item} [article] Blue only" in p2_list
    [bad] = await stack.ask("mkt1", "newcontent X | https://brand.example/x | | partner:Nobody")
    assert bad.startswith("Content not added: no partner is called “Nobody”")


async def test_retired_and_expired_items_are_refused_with_the_reason(stack: Stack) -> None:
    item = await add(stack, "newcontent Old deck | https://brand.example/old")
    _, text = await stack.ask("p1", f"content {item}", expect=2)
    code = code_in(text)
    [retired] = await stack.ask("mkt1", f"retirecontent {item}")
    assert retired.startswith(f"Content #{item} is retired")
    [refused] = await stack.ask("p1", f"素材 {item}")
    assert refused == f"抱歉：素材 #{item} 已下架，不能再分享。"
    assert (await follow(stack, code)).status == 410
    assert "Old deck (retired)" in (await stack.ask("mkt1", "content"))[0]

    other = await add(stack, "newcontent Autumn | https://brand.example/autumn")
    # 23:30 UTC is the next morning in the server's zone (Asia/Shanghai): the day shown is the local one.
    ended = (utcnow() - timedelta(days=2)).replace(hour=23, minute=30, second=0, microsecond=0)
    async with stack.bot[DB].session() as session:
        (await session.get(ContentItem, other)).expires_at = ended
    [expired] = await stack.ask("p1", f"content {other}")
    local_day = ended.astimezone(ZoneInfo(stack.config.server.timezone)).strftime("%Y-%m-%d")
    assert expired == f"Sorry: Content #{other} expired on {local_day} and may no longer be shared."
    assert f"#{other}" not in (await stack.ask("p1", "content"))[0]


@pytest.mark.parametrize("text, answer", [
    ("newcontent Deck | ftp://brand.example/deck", "Content not added: the link must be a web address starting with http:// or https://."),
    ("newcontent  | https://brand.example/deck", "Content not added: the title is empty."),
    ("newcontent just a title", "give a title and a link separated by |, then tags if you like."),
    ("新话术 回访 | 您好，请拨打{电话}", "未添加话术：未知变量 {电话}；可用 {姓名} {公司} {链接}（或 {name} {company} {link}）。"),
    ("newscript Intro | ", "Script not added: the script text is empty."),
    ("newscript no pipe here", "give a title and the script text separated by |."),
    ("content 99", "Sorry: There is no content #99 for you. Send content to see yours."),
    ("attach 1", "give the task number and the content number, e.g. attach 12 5."),
    ("attach 7 1", "There is no task #7."),
])
async def test_bad_input_gets_a_clear_answer(stack: Stack, text: str, answer: str) -> None:
    who = "p1" if text.startswith("content") else "mkt1"
    [reply] = await stack.ask(who, text)
    assert reply.startswith(answer), reply


async def test_partners_cannot_add_content(stack: Stack) -> None:
    [reply] = await stack.ask("p1", "newcontent X | https://brand.example/x")
    assert "Content not added" not in reply and "marketers" in reply


async def test_attached_content_rides_on_the_task_card(stack: Stack) -> None:
    await stack.ask("mkt1", "newtask Spring | https://brand.example/spring")
    item = await add(stack, 'newcontent Spring case | https://brand.example/case | | partner:"Blue Ocean"')
    [attached] = await stack.ask("mkt1", f"attach 1 {item}")
    assert attached.startswith(f"Content #{item} “Spring case” is attached to task #1")
    [again] = await stack.ask("mkt1", f"关联 1 {item}")
    assert again == f"素材 #{item} 已关联到任务 #1。"
    [shown] = await stack.ask("mkt1", "task 1")
    assert f"• #{item} [article] Spring case — content {item}" in shown

    await stack.ask("mkt1", "broadcast 1 partner:星河科技 confirm")
    [card] = await stack.sim.wait_for_bot_messages("p1", 1)
    keys = [b["key"] for b in card.body["button_list"]]
    assert keys == ["海报 1", "链接 1", "任务 1", f"素材 {item}"]
    # p1 is outside the item's audience, but the task that offers it was sent to them.
    before = len(stack.sim.bot_messages("p1"))
    await stack.sim.click("p1", keys[-1], card.body["task_id"])
    messages = await stack.sim.wait_for_bot_messages("p1", before + 2)
    assert "/t/" in messages[-2].body["articles"][0]["url"]
    [task] = await stack.ask("p1", "任务 1")
    assert f"• #{item} [文章] Spring case — 素材 {item}" in task


async def test_a_copy_and_its_clicks_leave_the_task_figures_as_they_were(stack: Stack) -> None:
    await stack.ask("mkt1", "newtask Spring | https://brand.example/spring")
    await stack.ask("mkt1", "broadcast 1 all confirm")
    await stack.sim.wait_for_bot_messages("p1", 1)  # the card first, so the next reply is link's
    await stack.ask("p1", "link 1")
    before, _ = await stack.ask("mkt1", "report task 1", expect=2)
    item = await add(stack, "newcontent Case | https://brand.example/case")
    await stack.ask("mkt1", f"attach 1 {item}")
    _, text = await stack.ask("p1", f"content {item}", expect=2)
    assert (await follow(stack, code_in(text))).status == 302
    async with stack.bot[DB].session() as session:
        link = (await session.scalars(select(TrackedLink).where(TrackedLink.code == code_in(text)))).one()
    await eventually(lambda: stored_clicks(stack, link.id))
    after, _ = await stack.ask("mkt1", "report task 1", expect=2)
    assert after == before


async def test_a_member_taking_one_copy_many_times_at_once_counts_one_share(database_url: str) -> None:
    import asyncio

    from store import content as content_store
    from store.db import Database
    from store.members import get_member
    from tests.conftest import seed

    await seed(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            item = await content_store.create_content(session, title="Deck", url="https://brand.example/deck",
                                                      creator=None)
            item_id = item.id

        async def take() -> bool:
            async with db.session() as session:
                member = await get_member(session, "p1")
                return (await content_store.take_copy(session, await content_store.get_content(session, item_id),
                                                      member)).first

        firsts = await asyncio.gather(*(take() for _ in range(8)))
        async with db.session() as session:
            shares = await session.scalar(select(func.count()).select_from(Share).where(Share.content_id == item_id))
        assert (sum(firsts), shares) == (1, 1)
    finally:
        await db.dispose()
