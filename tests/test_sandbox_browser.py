"""The sandbox page in a real headless Chromium, against the real bot and simulator (DESIGN §9).

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`): skipped without it on a
newcomer's machine, a failure in CI.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import BrowserContext, Locator, Page, async_playwright, expect

from tests.conftest import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SCREENSHOT = Path("/tmp/sandbox.png")
REPLY_TIMEOUT_MS = 10_000
HELP_EN = "help — what you can do here"
HELP_ZH = "帮助 — 查看可用命令"


@dataclass
class Sandbox:
    page: Page
    stack: Stack
    # Uncaught exceptions and console errors (CSP violations show up here too).
    errors: list[str] = field(default_factory=list)

    async def choose(self, userid: str) -> None:
        await self.page.select_option("#member", userid)
        await expect(self.page.locator("#member")).to_have_value(userid)

    async def type_and_enter(self, text: str) -> None:
        await self.page.locator("#text").fill(text)
        await self.page.locator("#text").press("Enter")

    def bot(self, text: str = "") -> Locator:
        messages = self.page.locator(".msg.from-bot")
        return messages.filter(has_text=text) if text else messages

    def assert_clean(self) -> None:
        assert self.errors == [], f"the page logged errors: {self.errors}"


@asynccontextmanager
async def chromium_page(timeout_ms: int, **context_options: Any) -> AsyncIterator[tuple[BrowserContext, Page, list[str]]]:
    """A page in Debian's headless Chromium, and the list its JS and console errors go to. Without
    Chromium the test is skipped on a newcomer's machine and fails in CI."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message + " (CI must run the browser tests, not skip them)")
        pytest.skip(message)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(**context_options)
            page = await context.new_page()
            page.set_default_timeout(timeout_ms)
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(f"pageerror: {err}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
            yield context, page, errors
        finally:
            await browser.close()


@pytest.fixture
async def sandbox(stack: Stack) -> AsyncIterator[Sandbox]:
    async with chromium_page(REPLY_TIMEOUT_MS, viewport={"width": 1100, "height": 760}, locale="zh-CN") as opened:
        _, page, errors = opened
        box = Sandbox(page, stack)
        box.errors = errors
        await page.goto(stack.sim_url + "/")
        # The member list is loaded from the simulator's directory.
        await expect(page.locator("#member option[value='p1']")).to_have_text("张伟 (p1)")
        yield box


async def test_chat_as_member_gets_help(sandbox: Sandbox) -> None:
    page = sandbox.page
    await sandbox.choose("p1")
    await sandbox.type_and_enter("help")
    await expect(sandbox.bot(HELP_EN)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    await expect(page.locator("#text")).to_have_value("")
    await expect(page.locator("#text")).to_be_focused()
    # The member's own line is shown, and its status settles once the bot acknowledged the callback.
    mine = page.locator(".msg.from-user[data-msgtype='text']").filter(has_text="help")
    await expect(mine).to_have_count(1)
    await expect(mine).to_contain_text("delivered")

    await sandbox.type_and_enter("帮助")
    await expect(sandbox.bot(HELP_ZH)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    await expect(sandbox.bot(HELP_ZH)).to_contain_text("张伟")
    # Empty input sends nothing.
    await sandbox.type_and_enter("   ")
    await page.wait_for_timeout(800)
    await expect(page.locator(".msg.from-user")).to_have_count(2)
    assert len(sandbox.stack.sim.bot_messages("p1")) == 2

    await page.screenshot(path=str(SCREENSHOT))
    sandbox.assert_clean()


async def test_switching_member_reloads_conversation(sandbox: Sandbox) -> None:
    page = sandbox.page
    await sandbox.choose("p1")
    await sandbox.type_and_enter("help")
    await expect(sandbox.bot(HELP_EN)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    await sandbox.choose("p2")
    await expect(page.locator(".msg")).to_have_count(0)
    await sandbox.choose("p1")
    await expect(sandbox.bot(HELP_EN)).to_have_count(1)
    await expect(page.locator(".msg.from-user")).to_have_count(1)
    sandbox.assert_clean()


async def test_custom_userid_and_errors(sandbox: Sandbox) -> None:
    page = sandbox.page
    # Client-side validation: nothing is added for a malformed userid.
    await page.locator("#custom-userid").fill("no spaces!")
    await page.locator("#custom-add").click()
    await expect(page.locator("#custom-userid")).to_have_class("invalid")
    await expect(page.locator("#error")).to_contain_text("userid")
    await expect(page.locator("#member option[value='no spaces!']")).to_have_count(0)

    await page.locator("#custom-userid").fill("stranger")
    await page.locator("#custom-add").click()
    await expect(page.locator("#member")).to_have_value("stranger")
    await sandbox.type_and_enter("hi")
    await expect(sandbox.bot("stranger")).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    await expect(sandbox.bot("stranger")).to_contain_text("not registered")

    # A userid the directory has never seen is added to the picker and can chat too.
    await page.locator("#custom-userid").fill("new.person@x")
    await page.locator("#custom-userid").press("Enter")
    await expect(page.locator("#member")).to_have_value("new.person@x")
    await expect(page.locator("#member option[value='new.person@x']")).to_have_count(1)
    await sandbox.type_and_enter("你好")
    await expect(sandbox.bot("new.person@x")).to_have_count(1, timeout=REPLY_TIMEOUT_MS)

    # A 400 from the simulator is shown to the person, and the text is kept to retry.
    await page.route("**/sandbox/api/send", lambda route: route.fulfill(
        status=400, content_type="application/json", json={"error": "text must be 1-2048 characters"}))
    await sandbox.type_and_enter("will fail")
    await expect(page.locator("#error")).to_contain_text("text must be 1-2048 characters")
    await expect(page.locator("#text")).to_have_value("will fail")
    # The browser logs the 400 response itself as a console error; that one is expected.
    sandbox.errors = [e for e in sandbox.errors if "400" not in e]
    sandbox.assert_clean()


async def test_bot_content_is_never_html(sandbox: Sandbox) -> None:
    page, sim = sandbox.page, sandbox.stack.sim
    await sandbox.choose("p1")
    sim.record("p1", "bot", "text", {"content": "<img src=x onerror=window.__xss=1>"})
    sim.record("p1", "bot", "markdown", {"content": "[x](javascript:alert(1)) **bold**"})
    sim.record("p1", "bot", "markdown", {"content": (
        "# Title <script>window.__xss=2</script>\n> quoted\n`code` and [docs](https://example.com/a)\n"
        '<font color="warning">warn</font> <font color="red" onclick="x()">raw</font>')})
    sim.record("p1", "bot", "template_card", {
        "card_type": "text_notice", "main_title": {"title": "<b>T</b>", "desc": "<i>D</i>"},
        "card_action": {"type": 1, "url": "javascript:alert(3)"}, "task_id": "t0"})
    sim.record("p1", "bot", "news", {"articles": [{"title": "<svg onload=window.__xss=4>"}]})

    text = page.locator(".msg.from-bot[data-msgtype='text'] .bubble")
    await expect(text).to_have_text("<img src=x onerror=window.__xss=1>")
    markdown = page.locator(".msg.from-bot[data-msgtype='markdown']")
    await expect(markdown).to_have_count(2)
    await expect(markdown.first).to_contain_text("[x](javascript:alert(1)) bold")
    await expect(markdown.first.locator("strong, b")).to_have_text("bold")
    second = markdown.nth(1)
    await expect(second).to_contain_text("Title <script>window.__xss=2</script>")
    await expect(second.locator("[role='heading']")).to_have_count(1)
    await expect(second.locator(".md-quote")).to_have_text("quoted")
    await expect(second.locator("code")).to_have_text("code")
    await expect(second.locator("a")).to_have_attribute("href", "https://example.com/a")
    await expect(second.locator("a")).to_have_attribute("rel", "noopener noreferrer")
    await expect(second.locator("a")).to_have_attribute("target", "_blank")
    await expect(second.locator(".c-warning")).to_have_text("warn")
    await expect(second).to_contain_text('<font color="red" onclick="x()">raw</font>')
    card = page.locator(".msg.from-bot[data-msgtype='template_card']")
    await expect(card).to_contain_text("<b>T</b>")
    await expect(card).to_contain_text("<i>D</i>")
    await expect(card.locator("a")).to_have_count(0)
    await expect(page.locator(".msg.from-bot[data-msgtype='news'] .card-title")).to_have_text("<svg onload=window.__xss=4>")

    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert await page.locator("a[href^='javascript' i]").count() == 0
    assert await page.locator("#messages img, #messages script, #messages svg, #messages font, #messages b").count() == 0
    sandbox.assert_clean()


async def test_card_button_runs_its_command(sandbox: Sandbox) -> None:
    page, sim = sandbox.page, sandbox.stack.sim
    await sandbox.choose("p1")
    sim.record("p1", "bot", "template_card", {
        "card_type": "button_interaction", "main_title": {"title": "T", "desc": "D"}, "task_id": "t1",
        "button_list": [{"text": "帮助", "key": "help"}]})
    button = page.locator(".msg.from-bot[data-msgtype='template_card'] .card-button")
    await expect(button).to_have_text("帮助")
    await expect(sandbox.bot()).to_have_count(1)
    await button.click()
    # Through the real callback path: simulator -> template_card_event -> bot runs "help" -> message/send.
    await expect(page.locator(".msg.from-user[data-msgtype='click']")).to_contain_text("clicked: help")
    await expect(sandbox.bot(HELP_EN)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    await expect(sandbox.bot()).to_have_count(2)
    sandbox.assert_clean()


TASK_SCREENSHOT = Path("/tmp/sandbox-task.png")
STEP_TIMEOUT_MS = 15_000


async def test_marketer_broadcasts_task_partner_opens_card(sandbox: Sandbox) -> None:
    """The whole marketer → partner loop through the page: create, preview, confirm, card, button, list."""
    page, sim = sandbox.page, sandbox.stack.sim
    await sandbox.choose("mkt1")
    await sandbox.type_and_enter("newtask Spring launch | https://brand.example/spring")
    await expect(sandbox.bot("Task #1 created")).to_have_count(1, timeout=STEP_TIMEOUT_MS)

    await sandbox.type_and_enter("broadcast 1 partner:星河科技")
    preview = sandbox.bot("will go to 1 member(s)")
    await expect(preview).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(preview).to_contain_text("broadcast 1 partner:星河科技 confirm")
    # Nothing is sent before the confirm step.
    assert not [m for m in sim.bot_messages("p1") if m.msgtype == "template_card"]
    await sandbox.type_and_enter("broadcast 1 partner:星河科技 confirm")
    await expect(sandbox.bot("on its way to 1 member(s)")).to_have_count(1, timeout=STEP_TIMEOUT_MS)

    # The partner of 星河科技 finds the task card in their conversation.
    await sandbox.choose("p1")
    card = page.locator(".msg.from-bot[data-msgtype='template_card']")
    await expect(card).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(card.locator(".card-title")).to_contain_text("新任务 #1：Spring launch")
    await expect(card.locator(".card-desc")).to_contain_text("点下方按钮获取您的专属物料")
    # Other buttons (poster, link) appear as those commands exist; this one runs "任务 1".
    button = card.locator(".card-button").filter(has_text="任务详情")
    await expect(button).to_have_count(1)
    await expect(button).to_have_text("任务详情")
    await button.click()
    await expect(page.locator(".msg.from-user[data-msgtype='click']")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    details = sandbox.bot("您还没有分享")
    await expect(details).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(details).to_contain_text("#1 Spring launch")
    # The button comes back after its brief "clicked" state; the screenshot shows the settled page.
    await expect(button).to_be_enabled()
    await expect(button).not_to_have_class(re.compile(r"\bclicked\b"))
    await page.screenshot(path=str(TASK_SCREENSHOT), animations="disabled")

    await sandbox.type_and_enter("任务")
    listing = sandbox.bot("未分享")
    await expect(listing).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(listing).to_contain_text("#1 Spring launch")
    await expect(card).to_have_count(1)  # still exactly one card: the broadcast went out once

    # Another partner (Blue Ocean) got nothing: their conversation loads, and holds no card.
    await sandbox.choose("p2")
    await sandbox.type_and_enter("任务")
    await expect(sandbox.bot("您目前没有进行中的任务")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(page.locator(".msg.from-bot[data-msgtype='template_card']")).to_have_count(0)
    await expect(page.locator(".card-button")).to_have_count(0)
    assert not [m for m in sim.bot_messages("p2") if m.msgtype == "template_card"]
    sandbox.assert_clean()


POSTER_SCREENSHOT = Path("/tmp/sandbox-poster.png")
POSTER_TIMEOUT_MS = 20_000


async def test_partner_gets_poster_from_card_button(sandbox: Sandbox, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's acceptance flow: 我的海报 on the task card → a 1080×1920 poster shown in the chat whose
    QR code is the partner's own tracked link, plus the note that goes with it."""
    # The stack's renderer caches posters under the relative "var/posters": keep them out of the checkout.
    monkeypatch.chdir(tmp_path)
    page, stack = sandbox.page, sandbox.stack
    await sandbox.choose("mkt1")
    await sandbox.type_and_enter("newtask Spring launch | https://brand.example/spring")
    await expect(sandbox.bot("Task #1 created")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await sandbox.type_and_enter("broadcast 1 partner:星河科技 confirm")
    await expect(sandbox.bot("on its way to 1 member(s)")).to_have_count(1, timeout=STEP_TIMEOUT_MS)

    await sandbox.choose("p1")
    card = page.locator(".msg.from-bot[data-msgtype='template_card']")
    await expect(card).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    button = card.locator(".card-button").filter(has_text="我的海报")
    await expect(button).to_have_count(1)
    await button.click()
    await expect(page.locator(".msg.from-user[data-msgtype='click']")).to_have_count(1, timeout=STEP_TIMEOUT_MS)

    image = page.locator(".msg.from-bot[data-msgtype='image'] img")
    await expect(image).to_have_count(1, timeout=POSTER_TIMEOUT_MS)
    await expect(image).to_have_attribute("src", re.compile(r"^/sandbox/media/[^/?#]+$"))
    note = page.locator(".msg.from-bot[data-msgtype='text']").filter(has_text="专属海报")
    await expect(note).to_have_count(1, timeout=POSTER_TIMEOUT_MS)
    [sent] = [m for m in stack.sim.bot_messages("p1") if m.msgtype == "image"]
    assert await image.get_attribute("src") == f"/sandbox/media/{sent.body['media_id']}"

    # The browser really fetched and decoded the picture (not just an <img> pointing somewhere).
    handle = await image.element_handle()
    await page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle,
                                 timeout=POSTER_TIMEOUT_MS)
    size = await page.evaluate("img => [img.naturalWidth, img.naturalHeight]", handle)
    assert size == [1080, 1920]

    # The same bytes, through the page's own request context, carry the partner's tracked link.
    response = await page.request.get(await image.evaluate("img => img.src"))
    assert response.ok, response.status
    assert response.headers["content-type"] == "image/png"
    [qr] = zxingcpp.read_barcodes(Image.open(io.BytesIO(await response.body())))
    prefix = f"{stack.config.server.public_base_url}/t/"
    assert qr.text.startswith(prefix), qr.text
    assert re.fullmatch(r"[A-Za-z0-9_-]{11}", qr.text.removeprefix(prefix)), qr.text

    # The poster sits inside its bubble at a chat-friendly size, and the conversation ends in view.
    box = await image.bounding_box()
    assert box is not None and box["width"] <= 280, box
    bubble = await page.locator(".msg.from-bot[data-msgtype='image'] .bubble").bounding_box()
    messages = await page.locator("#messages").bounding_box()
    assert bubble is not None and messages is not None
    assert bubble["width"] <= box["width"] + 12, (bubble, box)  # the bubble hugs the picture
    assert bubble["x"] + bubble["width"] <= messages["x"] + messages["width"], (bubble, messages)
    assert bubble["height"] < messages["height"], (bubble, messages)  # the whole poster fits on screen
    await expect(note).to_be_in_viewport()
    await page.screenshot(path=str(POSTER_SCREENSHOT), animations="disabled")
    sandbox.assert_clean()


@pytest.fixture
async def pool_leads(stack: Stack) -> list[int]:
    from tests.test_pool import add_leads
    return await add_leads(stack.config.database.url)


async def test_lead_pool_claim_follow_return_win_and_audit(pool_leads: list[int], sandbox: Sandbox) -> None:
    """The lead pool through the page: a masked listing, claim, follow-up, return, another partner's
    claim and win, and the admin's audit trail. `pool_leads` is listed first so the leads exist before
    the page opens."""
    page = sandbox.page
    await sandbox.choose("p1")
    await sandbox.type_and_enter("线索池")
    listing = sandbox.bot("#1 赵总")
    await expect(listing).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(listing).to_contain_text("138****0001")
    await expect(listing).not_to_contain_text("13800000001")

    await sandbox.type_and_enter("领取 1")
    claimed = sandbox.bot("线索 #1 已归您")
    await expect(claimed).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(claimed.locator(".bubble")).to_have_text(re.compile(r"^\s*线索 #1 已归您"))
    await expect(claimed).to_contain_text("13800000001")

    await sandbox.type_and_enter("跟进 1 已电话沟通")
    await expect(sandbox.bot("已记录线索 #1 的跟进。")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await sandbox.type_and_enter("退回 1 客户暂无预算")
    await expect(sandbox.bot("线索 #1 已退回线索池。")).to_have_count(1, timeout=STEP_TIMEOUT_MS)

    await sandbox.choose("p2")
    await expect(page.locator(".msg")).to_have_count(0)
    await sandbox.type_and_enter("领取 3")
    await expect(sandbox.bot("抱歉：您的线索池里没有线索 #3。")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await sandbox.type_and_enter("领取 1")
    await expect(sandbox.bot("线索 #1 已归您")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await sandbox.type_and_enter("成交 1 5万")
    await expect(sandbox.bot("成交：50,000.00")).to_have_count(1, timeout=STEP_TIMEOUT_MS)

    await sandbox.choose("admin1")
    await sandbox.type_and_enter("线索 1")
    history = sandbox.bot("客户暂无预算")
    await expect(history).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    text = await history.inner_text()
    positions, start = [], 0
    for kind in ["领取", "跟进", "退回线索池", "领取", "成交"]:
        start = text.index(kind, start)
        positions.append(start)
        start += len(kind)
    assert positions == sorted(positions), text
    sandbox.assert_clean()


@pytest.fixture
async def campaign(stack: Stack) -> dict[str, int]:
    from tests.test_report_chat import programme
    return await programme(stack)


async def test_admin_asks_for_stats_and_attribution(campaign: dict[str, int], sandbox: Sandbox) -> None:
    """The stats issue's acceptance flow: 统计 gives the funnel as text plus a readable chart in the
    chat, and 归因 线性 the revenue split; the figures are those of `programme` (tests/test_report_chat.py)."""
    page = sandbox.page
    await sandbox.choose("admin1")
    await sandbox.type_and_enter("统计")
    summary = sandbox.bot("触达 1 人 → 分享 1 人（100%）")
    await expect(summary).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(summary).to_contain_text("独立点击 4（每位分享者带来 4 次） → 线索 2（每百次独立点击 50 条） → "
                                          "已跟进 1（50%） → 成交 1（100%）")
    await expect(summary).to_contain_text("本期成交 1 单，成交额 ¥9,000")
    chart = page.locator(".msg.from-bot[data-msgtype='image'] img")
    await expect(chart).to_have_count(1, timeout=POSTER_TIMEOUT_MS)
    handle = await chart.element_handle()
    await page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle, timeout=POSTER_TIMEOUT_MS)
    assert await page.evaluate("img => img.naturalWidth", handle) == 1080

    await sandbox.type_and_enter("归因 线性")
    split = sandbox.bot("💰 归因 · 线性")
    await expect(split).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    await expect(split).to_contain_text("成交 1 单，¥9,000")
    await expect(split).to_contain_text("#1 双十二 ¥9,000（成本 ¥1,000，ROI +800%）")
    await expect(split).to_contain_text("星河科技 ¥4,500")
    await page.screenshot(path="/tmp/sandbox-stats.png", animations="disabled")
    sandbox.assert_clean()
