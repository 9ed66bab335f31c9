"""The lead pool: visibility, masking, atomic claims, the §5 rules, follow-ups, wins, the audit trail."""
import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.app import DB
from store import pool
from store.db import Database
from store.members import MemberRow, get_member
from store.models import Lead, LeadEvent, Partner, utcnow
from tests.conftest import MEMBERS, Stack, seed

PHONES = ["13800000001", "13800000002", "13800000003", "13800000004"]


async def add_leads(url: str) -> list[int]:
    """Two public leads, one in 星河科技's pool (p1's partner), one in Blue Ocean's (p2's)."""
    db = Database(url)
    try:
        async with db.session() as session:
            partners = {p.name: p.id for p in await session.scalars(select(Partner))}
            leads = [Lead(name="赵总", company="华星制造", phone=PHONES[0], region="上海", industry="制造", source="import"),
                     Lead(name="钱经理", company="远航物流", phone=PHONES[1], region="广州", industry="物流", source="import"),
                     Lead(name="孙女士", company="星河客户", phone=PHONES[2], region="上海", industry="零售", source="import",
                          pool_partner_id=partners["星河科技"]),
                     Lead(name="李先生", company="蓝海客户", phone=PHONES[3], region="深圳", industry="金融", source="import",
                          pool_partner_id=partners["Blue Ocean"])]
            session.add_all(leads)
            await session.flush()
            return [lead.id for lead in leads]
    finally:
        await db.dispose()


@pytest.fixture
async def pool_stack(stack: Stack) -> Stack:
    await add_leads(stack.config.database.url)
    return stack


def full_phones_in(text: str) -> list[str]:
    return [p for p in PHONES if p in text]


async def test_pool_shows_my_pools_masked_and_filters(pool_stack: Stack) -> None:
    [reply] = await pool_stack.ask("p1", "线索池")
    assert "#1 赵总" in reply and "#2 钱经理" in reply and "#3 孙女士" in reply and "#4" not in reply
    assert "138****0001" in reply and full_phones_in(reply) == []
    [reply] = await pool_stack.ask("p1", "pool 上海")
    assert "#1" in reply and "#3" in reply and "#2" not in reply
    [reply] = await pool_stack.ask("p2", "pool")
    assert "#4 李先生" in reply and "#3" not in reply


async def test_claim_follow_return_win_and_the_audit_trail(pool_stack: Stack) -> None:
    s = pool_stack
    [reply] = await s.ask("p1", "领取 1")
    assert reply.startswith("线索 #1 已归您：#1 赵总（华星制造）13800000001")
    [reply] = await s.ask("p2", "claim 1")
    assert reply == "Sorry: lead #1 is held by someone else." and full_phones_in(reply) == []
    [reply] = await s.ask("p2", "claim 3")
    assert reply == "Sorry: there is no lead #3 in your pools."
    [reply] = await s.ask("p1", "跟进 1 已电话沟通，下周报价")
    assert reply == "已记录线索 #1 的跟进。"
    [reply] = await s.ask("p1", "我的线索")
    assert "13800000001" in reply and "0 天未跟进" in reply
    [reply] = await s.ask("p1", "退回 1")
    assert reply == "抱歉：请写明退回原因。"
    [reply] = await s.ask("p1", "退回 1 客户暂无预算")
    assert reply == "线索 #1 已退回线索池。"
    [reply] = await s.ask("p1", "claim 1")
    assert reply.startswith("Sorry: you gave lead #1 back recently; you may claim it again after ")
    [reply] = await s.ask("p2", "claim 1")
    assert reply.startswith("Lead #1 is yours")
    [reply] = await s.ask("p2", "won 1 1.2万")
    assert reply == "🎉 Lead #1 won: 12,000.00."
    [reply] = await s.ask("p2", "lost 1 changed mind")
    assert reply == "Sorry: lead #1 is already won."
    [history] = await s.ask("admin1", "lead 1")
    kinds = [line.split(" ")[3] for line in history.splitlines()[1:]]
    assert kinds == ["claimed", "followed", "returned", "claimed", "won"]
    assert "客户暂无预算" in history
    from datetime import datetime
    from zoneinfo import ZoneInfo
    shown = datetime.strptime(" ".join(history.splitlines()[-1].split(" ")[1:3]), "%Y-%m-%d %H:%M")
    local_now = datetime.now(ZoneInfo(s.config.server.timezone)).replace(tzinfo=None)
    assert abs((local_now - shown).total_seconds()) < 120  # times in [server] timezone, not UTC
    [reply] = await s.ask("p1", "lead 1")
    assert reply.startswith("“lead” is for admins only")


@pytest.mark.parametrize("text, expected", [
    ("claim abc", "“abc” is not a number"),
    ("claim 999", "Sorry: there is no lead #999 in your pools."),
    ("follow 2 called", "Sorry: lead #2 is not one of yours"),
    ("won 2 100", "Sorry: lead #2 is not one of yours"),
    ("won 1", "give the order amount"),
    ("won 1 -5", "the amount must be more than 0"),
    ("won 1 0", "the amount must be more than 0"),
    ("won 1 1e20", "the amount must be more than 0 and less than 10,000,000,000"),
    ("won 1 lots", "“lots” is not an amount"),
    ("lost 1", "Sorry: give a reason."),
    ("follow 1 " + "很" * 1000, "Sorry: the note of what happened is 1000 characters; at most 500."),
    ("return", "give the lead number"),
])
async def test_bad_pool_input(pool_stack: Stack, text: str, expected: str) -> None:
    await pool_stack.ask("p1", "claim 1")
    [reply] = await pool_stack.ask("p1", text)
    assert expected in reply
    async with pool_stack.bot[DB].session() as session:
        lead = await session.get(Lead, 1)
        assert (lead.status, lead.won_amount) == ("claimed", None)


async def test_limits_are_enforced(pool_stack: Stack) -> None:
    pool_stack.config.pool.max_held = 1
    await pool_stack.ask("p1", "claim 1")
    [reply] = await pool_stack.ask("p1", "claim 2")
    assert reply == "Sorry: you already hold 1 open leads, the most allowed (1); win, lose or return one first."
    pool_stack.config.pool.max_held = 10
    pool_stack.config.pool.daily_claim_limit = 2
    await pool_stack.ask("p1", "claim 2")
    [reply] = await pool_stack.ask("p1", "claim 3")
    assert reply == "Sorry: you have claimed 2 leads today, the daily limit; try again tomorrow."


async def test_embargo(pool_stack: Stack) -> None:
    pool_stack.config.pool.embargo_hours = 2
    [reply] = await pool_stack.ask("p1", "pool")
    assert reply == "No leads to claim right now."
    [reply] = await pool_stack.ask("p1", "claim 1")
    assert reply.startswith("Sorry: lead #1 can be claimed from ")


async def test_concurrent_claims_of_one_lead_have_one_winner(database_url: str) -> None:
    crowd = [MemberRow(0, f"c{i:02d}", f"C{i}", "partner", "星河科技", "", ()) for i in range(20)]
    await seed(database_url, [*MEMBERS, *crowd])
    [lead_id, *_] = await add_leads(database_url)
    db = Database(database_url)
    rules = pool.RuleBook(pool.PoolRules(timezone="Asia/Shanghai"))

    async def try_claim(userid: str) -> str:
        async with db.session() as session:
            member = await get_member(session, userid)
            try:
                await pool.claim(session, member, lead_id, rules)
                return "won"
            except pool.Refusal as refusal:
                return refusal.en

    try:
        results = await asyncio.gather(*(try_claim(m.userid) for m in crowd))
        assert results.count("won") == 1
        assert set(results) - {"won"} == {f"lead #{lead_id} is held by someone else"}
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(LeadEvent).where(LeadEvent.kind == "claimed")) == 1
    finally:
        await db.dispose()


async def test_one_members_parallel_claims_respect_max_held(database_url: str) -> None:
    await seed(database_url)
    await add_leads(database_url)
    db = Database(database_url)
    rules = pool.RuleBook(pool.PoolRules(max_held=1, timezone="Asia/Shanghai"))

    async def try_claim(lead_id: int) -> bool:
        async with db.session() as session:
            try:
                await pool.claim(session, await get_member(session, "p1"), lead_id, rules)
                return True
            except pool.Refusal:
                return False

    try:
        assert sum(await asyncio.gather(*(try_claim(i) for i in (1, 2, 3)))) == 1
    finally:
        await db.dispose()


LEAD_HEADER = "name,company,phone,region,industry,source,pool\n"


async def test_leads_import_is_all_or_nothing_and_reports_duplicates(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    await seed(database_url)
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n')
    bad = tmp_path / "bad.csv"
    bad.write_text(LEAD_HEADER + "王总,甲公司,13900000001,上海,制造,expo,\n"
                   ",乙公司,13900000002,,,,\n"
                   "陈总,丙公司,12345,,,,星河科技\n"
                   "刘总,丁公司,13900000004,,,,Nobody\n"
                   "王总,甲公司,139-0000-0001,,,,\n", encoding="utf-8")
    good = tmp_path / "good.csv"
    good.write_text(LEAD_HEADER + "王总,甲公司,13900000001,上海,制造,expo,\n周总,戊公司,13900000005,,,,星河科技\n",
                    encoding="utf-8")

    def cli(path) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        return subprocess.run([sys.executable, "-m", "bot", "leads", "import", str(path), "--config", str(config)],
                              capture_output=True, text=True, timeout=120)

    result = cli(bad)
    assert result.returncode == 1, result.stderr
    lines = [line.split(": ", 1)[1] for line in result.stderr.strip().splitlines()[:-1]]
    assert [line.split(":")[0] for line in lines] == ["line 3", "line 4", "line 5", "line 6"]
    assert "name: Please enter your name" in lines[0] and "phone:" in lines[1]
    assert "no partner called 'Nobody'" in lines[2] and "already on line 2" in lines[3]
    assert "13900000001" not in result.stderr  # no full phone in output
    result = cli(good)
    assert result.returncode == 0 and "imported 2 leads (0 duplicate(s) skipped)" in result.stdout
    result = cli(good)
    assert "imported 0 leads (2 duplicate(s) skipped)" in result.stdout and "139****0001" in result.stdout
    db = Database(database_url)
    try:
        async with db.session() as session:
            leads = list(await session.scalars(select(Lead).order_by(Lead.id)))
            partner = await session.scalar(select(Partner).where(Partner.name == "星河科技"))
        assert [(l.name, l.pool_partner_id, l.source) for l in leads] == [("王总", None, "expo"), ("周总", partner.id, "import")]
    finally:
        await db.dispose()


async def test_idle_leads_are_recycled_once_with_a_warning_the_day_before(pool_stack: Stack) -> None:
    from bot.jobs import recycle_idle_leads
    from tests.conftest import eventually
    s = pool_stack
    await s.ask("p1", "claim 1")
    await s.ask("p1", "claim 2")
    async with s.bot[DB].session() as session:
        (await session.get(Lead, 1)).claimed_at = utcnow() - timedelta(days=8)  # past idle_days (7)
        (await session.get(Lead, 2)).claimed_at = utcnow() - timedelta(days=6, hours=12)  # recycled tomorrow
    results = await asyncio.gather(*(recycle_idle_leads(s.bot[DB], s.config) for _ in range(3)))
    assert sorted(results) == [0, 0, 1]

    async def notices() -> list[str]:
        texts = [m.body.get("content", "") for m in s.sim.bot_messages("p1")]
        found = [t for t in texts if "已收回线索池" in t or "明天将因未跟进被收回" in t]
        return found if len(found) == 2 else []

    recycled, warning = sorted(await eventually(notices), key=lambda t: "明天" in t)
    assert recycled.startswith("线索 #1（赵总）7 天未跟进，已收回线索池。")
    assert warning.startswith("⚠️ 线索 #2（钱经理）明天将因未跟进被收回。")
    async with s.bot[DB].session() as session:
        lead = await session.get(Lead, 1)
        assert (lead.owner_id, lead.status) == (None, "new")
        kinds = [e.kind for e in await session.scalars(select(LeadEvent).where(LeadEvent.lead_id == 1).order_by(LeadEvent.id))]
    assert kinds == ["claimed", "recycled"]
    [reply] = await s.ask("p1", "claim 1")
    assert reply.startswith("Sorry: you gave lead #1 back recently")
    await s.ask("p1", "follow 2 called back")  # a follow-up resets the clock: no second warning, no recycling
    assert await recycle_idle_leads(s.bot[DB], s.config) == 0
    await asyncio.sleep(0.3)
    assert len([m for m in s.sim.bot_messages("p1") if "明天将因未跟进被收回" in m.body.get("content", "")]) == 1


async def test_nurturing_lead_waits_for_its_date_then_the_holder_is_reminded(pool_stack: Stack) -> None:
    from bot.jobs import recycle_idle_leads, remind_nurturing
    from tests.conftest import eventually
    s = pool_stack
    await s.ask("p1", "claim 1")
    [reply] = await s.ask("p1", "孵化 1 2020-01-01")
    assert reply == "抱歉：下次联系日期必须在未来。"
    [reply] = await s.ask("p1", "nurture 1 2099-03-01 budget next year")
    assert reply == "Lead #1 is nurturing; I will remind you on 2099-03-01 09:00."
    [reply] = await s.ask("p1", "nurture 1")
    assert "give the next-contact date" in reply
    async with s.bot[DB].session() as session:
        lead = await session.get(Lead, 1)
        assert lead.status == "nurturing"
        lead.last_follow_at = utcnow() - timedelta(days=30)  # long quiet: nurturing does not go idle
    assert await recycle_idle_leads(s.bot[DB], s.config) == 0
    assert await remind_nurturing(s.bot[DB], s.config) == 0  # not its date yet
    async with s.bot[DB].session() as session:
        (await session.get(Lead, 1)).next_contact_at = utcnow() - timedelta(minutes=1)
    assert await remind_nurturing(s.bot[DB], s.config) == 1
    await remind_nurturing(s.bot[DB], s.config)  # the same date again: queued once only

    async def reminder() -> list[str]:
        return [m.body.get("content", "") for m in s.sim.bot_messages("p1") if "今天该联系线索" in m.body.get("content", "")]

    [text] = await eventually(reminder)
    assert text.startswith("⏰ 今天该联系线索 #1：赵总（华星制造）13800000001") and "转为孵化：下次联系 2099-03-01" in text
    await asyncio.sleep(0.3)
    assert len(await reminder()) == 1
    [reply] = await s.ask("p1", "follow 1 called, meeting booked")
    async with s.bot[DB].session() as session:
        lead = await session.get(Lead, 1)
        assert (lead.status, lead.next_contact_at) == ("following", None)


async def set_pool_rules(stack: Stack, partner: str | None, **changes: object) -> None:
    from store.pool_rules import set_overrides
    async with stack.bot[DB].session() as session:
        partner_id = await session.scalar(select(Partner.id).where(Partner.name == partner)) if partner else None
        await set_overrides(session, partner_id, changes)


async def test_each_pool_has_its_own_rules(pool_stack: Stack) -> None:
    s = pool_stack
    await set_pool_rules(s, "星河科技", max_held=1, return_reason_required=False)
    async with s.bot[DB].session() as session:
        partner_id = await session.scalar(select(Partner.id).where(Partner.name == "星河科技"))
        session.add(Lead(name="周总", company="星河二号", phone="13800000005", source="import", pool_partner_id=partner_id))
    assert (await s.ask("p1", "claim 3"))[0].startswith("Lead #3 is yours")
    # The public pool keeps the config's max_held (30): holding one lead does not stop this claim.
    assert (await s.ask("p1", "claim 1"))[0].startswith("Lead #1 is yours")
    [refused] = await s.ask("p1", "claim 5")
    assert refused == "Sorry: you already hold 2 open leads, the most allowed (1); win, lose or return one first."
    assert (await s.ask("p1", "return 3"))[0].startswith("Lead #3 is back")  # no reason needed in this pool
    [needs_reason] = await s.ask("p1", "return 1")
    assert needs_reason == "Sorry: give a reason."
    # Another partner's rules do not touch the public pool for p2.
    assert (await s.ask("p2", "claim 2"))[0].startswith("Lead #2 is yours")


async def test_idle_days_per_pool(pool_stack: Stack) -> None:
    from bot.jobs import recycle_idle_leads
    s = pool_stack
    await set_pool_rules(s, "星河科技", idle_days=2)
    await s.ask("p1", "claim 1")
    await s.ask("p1", "claim 3")
    async with s.bot[DB].session() as session:
        for lead_id in (1, 3):
            (await session.get(Lead, lead_id)).claimed_at = utcnow() - timedelta(days=3)
    assert await recycle_idle_leads(s.bot[DB], s.config) == 1
    async with s.bot[DB].session() as session:
        assert (await session.get(Lead, 3)).owner_id is None  # 星河科技's pool: 2 idle days
        assert (await session.get(Lead, 1)).owner_id is not None  # the public pool: still 7
    await set_pool_rules(s, None, idle_days=3)
    assert await recycle_idle_leads(s.bot[DB], s.config) == 1
