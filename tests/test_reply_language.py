"""Asked in Chinese, a reply reads in Chinese: no English status word, no internal id such as
"member 3" (issue 15). Asked in English, the same replies read in English. A partner is not
pointed at commands their role cannot use."""
import re

from bot.app import DB
from handlers import notices, words
from store import leads as lead_store
from store import links as link_store
from store import pool_rules
from store.members import get_member, member_names
from store.partners import partner_names_by_id
from store.models import Lead, LeadEvent, Task, utcnow
from tests.conftest import Stack

ENGLISH_WORDS = sorted({en for table in words.TABLES for en, _ in table.values()}, key=len, reverse=True)
# Lower-case words only: names such as "Ada Admin" or "Blue Ocean" are people's and companies' own.
ENGLISH = re.compile(r"(?<![\w/.:-])(" + "|".join(re.escape(w) for w in ENGLISH_WORDS) + r")(?![\w/.-])")
INTERNAL_ID = re.compile(r"member \d+|by member|partner pool \d+|rule #\d+ by")
FORM = {"name": "王女士", "company": "华星制造", "phone": "13800138000", "region": "上海", "industry": "制造"}


def english_in(text: str) -> list[str]:
    return ENGLISH.findall(text) + INTERNAL_ID.findall(text)


async def setup(stack: Stack) -> dict[str, int]:
    """A task sent to everyone, an ended one, a public lead and one p1's own link brought in."""
    [made] = await stack.ask("mkt1", "新任务 秋季体验周 | https://brand.example/autumn")
    task_id = int(re.search(r"#(\d+)", made).group(1))
    await stack.ask("mkt1", f"下发 {task_id} 全部 确认")
    await stack.sim.wait_for_bot_messages("p1", 1)
    async with stack.bot[DB].session() as session:
        p1 = await get_member(session, "p1")
        ended = Task(title="夏季促销", target_url="https://brand.example/summer", status="ended")
        public = Lead(name="赵总", company="远航物流", phone="13800000001", region="上海", industry="物流", source="import")
        session.add_all([ended, public])
        await session.flush()
        task = await session.get(Task, task_id)
        link = await link_store.get_or_create_link(session, task, p1, "link")
        form, _ = lead_store.validate_form(FORM, consent=True)
        own = await lead_store.create_from_form(session, form, sharer=p1, task_id=task_id, link_id=link.id,
                                                channel="link", visitor_id="v" * 20,
                                                book=await pool_rules.rule_book(session, stack.config.pool_rules))
        assert own is not None
        return {"task": task_id, "ended": ended.id, "public": public.id, "own": own.id}


async def test_chinese_replies_carry_no_english_status_or_internal_id(stack: Stack) -> None:
    ids = await setup(stack)
    lead = ids["public"]
    replies = {}
    for who, text in [("p1", "任务"), ("mkt1", "任务"), ("mkt1", f"任务 {ids['task']}"), ("p1", "线索池"),
                      ("p1", f"领取 {lead}"), ("admin1", f"线索 {lead}"), ("p1", f"跟进 {lead} 已电话沟通"),
                      ("p1", f"退回 {lead} 客户暂无预算"), ("admin1", f"线索 {lead}"), ("p2", f"领取 {lead}"),
                      ("p2", f"成交 {lead} 5万"), ("admin1", f"线索 {lead}"), ("admin1", f"线索 {ids['own']}"),
                      ("p1", "我的线索"), ("p1", "我的"), ("p1", "统计"), ("mkt1", "统计")]:
        [reply, *_] = await stack.ask(who, text, expect=2 if text == "统计" else 1)
        replies[f"{who}: {text}"] = reply
    leaking = {asked: english_in(reply) for asked, reply in replies.items() if english_in(reply)}
    assert not leaking, "\n\n".join(f"{asked} → {english_in(replies[asked])}\n{replies[asked]}" for asked in leaking)
    history = replies[f"admin1: 线索 {lead}"]
    assert "张伟（星河科技）" in history and "Li Na（Blue Ocean）" in history, history
    assert "已结束" in replies["mkt1: 任务"] and "进行中" in replies["mkt1: 任务"]


async def test_english_replies_read_in_english(stack: Stack) -> None:
    ids = await setup(stack)
    [tasks] = await stack.ask("mkt1", "tasks")
    assert "— ended" in tasks and "— active" in tasks
    [history] = await stack.ask("admin1", f"lead {ids['own']}")
    assert not re.search(r"[\u4e00-\u9fff]", history.replace("王女士", "").replace("华星制造", "")
                         .replace("上海", "").replace("制造", "").replace("张伟", "").replace("星河科技", "")), history
    assert "assigned to 张伟 (星河科技)" in history and "member " not in history


async def test_a_partners_report_points_only_at_commands_they_may_use(stack: Stack) -> None:
    [partner, _chart] = await stack.ask("p1", "统计", expect=2)
    assert "归因" not in partner
    [staff, _chart] = await stack.ask("mkt1", "统计", expect=2)
    assert "归因 线性" in staff


def test_the_new_lead_notice_says_each_line_in_one_language() -> None:
    lead = Lead(id=7, name="王女士", company="华星制造", phone="13800138000")
    zh, en = notices.new_lead(lead, task_id=3, channel="poster").content.splitlines()
    assert zh.startswith("🎉 新线索！") and "poster" not in zh and "海报" in zh
    assert not re.search(r"[\u4e00-\u9fff]", en.replace("王女士", "")), en
    assert "poster" in en


async def test_names_for_member_ids_come_from_the_store(stack: Stack) -> None:
    async with stack.bot[DB].session() as session:
        p1, admin = await get_member(session, "p1"), await get_member(session, "admin1")
        assert await member_names(session, [p1.id, admin.id, 999]) == {p1.id: ("张伟", "星河科技"),
                                                                      admin.id: ("Ada Admin", "")}
        assert await partner_names_by_id(session, [p1.partner_id]) == {p1.partner_id: "星河科技"}


def test_the_time_to_contact_notice_names_events_in_chinese() -> None:
    lead = Lead(id=7, name="王女士", company="华星制造", phone="13800138000")
    recent = [LeadEvent(kind="assigned", note="sharer", at=utcnow()),
              LeadEvent(kind="nurturing", note="next contact 2099-03-01: 客户在出差", at=utcnow())]
    *zh, en = notices.time_to_contact(lead, recent, [], "Asia/Shanghai").content.splitlines()
    assert not english_in("\n".join(zh)), zh
    assert "分配：分享者本人" in zh[1] and "转为孵化：下次联系 2099-03-01：客户在出差" in zh[2]
    assert not re.search(r"[\u4e00-\u9fff]", en), en
