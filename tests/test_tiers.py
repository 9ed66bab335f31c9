"""Partner tiers: monthly recalculation (checked by hand), announcements once a month, pools gated by
tier, and auto-assignment by capability with higher tiers first."""
import asyncio
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.app import DB
from bot.jobs import recalculate_tiers
from store import links as link_store
from store import tiers
from store.members import MemberRow, get_member
from store.models import Lead, OutboxMessage, Partner, Task, TierChange, TrackedLink, utcnow
from store.pool_rules import set_overrides
from tests.conftest import ADMIN_TOKEN, Stack, admin_http, make_config, seed, start_stack


def local_day(stack: Stack):  # type: ignore[no-untyped-def]
    return utcnow().astimezone(ZoneInfo(stack.config.server.timezone)).date()


async def activity(stack: Stack, clicks: dict[str, int], leads: dict[str, list[int]]) -> None:
    """Unique human clicks and leads (with won amounts; 0 = not won) on each member's link, 3 days ago."""
    at = utcnow() - timedelta(days=3)
    async with stack.bot[DB].session() as session:
        task = Task(title="T", target_url="https://x.example", status="active")
        session.add(task)
        await session.flush()
        for userid in sorted(set(clicks) | set(leads)):
            member = await get_member(session, userid)
            link = TrackedLink(code=f"c-{userid}", task_id=task.id, member_id=member.id, channel="link")
            session.add(link)
            await session.flush()
            await link_store.insert_clicks(session, [
                {"event_id": f"{userid}-{i}", "link_id": link.id, "at": at, "visitor_id": f"v{i}", "ip_hash": "h",
                 "user_agent": "", "referrer": "", "is_bot": False, "is_unique": True}
                for i in range(clicks.get(userid, 0))], stack.config.server.timezone)
            for i, amount in enumerate(leads.get(userid, [])):
                session.add(Lead(name="L", phone=f"1390{member.id:03d}{i:04d}", source="form:link", created_at=at,
                                 link_id=link.id, task_id=task.id, partner_id=member.partner_id, owner_id=member.id,
                                 status="won" if amount else "claimed", won_amount=Decimal(amount) if amount else None,
                                 won_at=at if amount else None))


def tier_config(stack: Stack) -> None:
    t = stack.config.tiers
    t.silver_unique_clicks, t.silver_leads, t.silver_revenue = 3, 1, 0
    t.gold_unique_clicks, t.gold_leads, t.gold_revenue = 10, 2, 5000


async def test_recalculation_matches_a_hand_count_and_is_announced_once(stack: Stack) -> None:
    tier_config(stack)
    await seed(stack.config.database.url, [MemberRow(0, "p3", "王芳", "partner", "星河科技", "", ()),
                                           MemberRow(0, "p4", "Zed", "partner", "Quiet Co", "", ())])
    # 星河科技: 6 + 5 = 11 unique clicks, 2 leads, 6,000 won → gold (every gold threshold met).
    # Blue Ocean: 4 clicks, 1 lead, 9,000 won → silver (gold needs 10 clicks and 2 leads).
    # Quiet Co: 2 clicks, no lead → registered (silver needs 3 clicks and a lead).
    await activity(stack, {"p1": 6, "p3": 5, "p2": 4, "p4": 2}, {"p1": [6000], "p3": [0], "p2": [9000]})
    async with stack.bot[DB].session() as session:
        (await session.scalar(select(Partner).where(Partner.name == "Blue Ocean"))).tier = "gold"  # will drop

    zone = ZoneInfo(stack.config.server.timezone)
    hour = stack.config.stats.digest_hour
    first = datetime.combine(local_day(stack).replace(day=1) + timedelta(days=32), time(hour - 1), tzinfo=zone)
    first = first.replace(day=stack.config.tiers.recalc_day)
    assert await recalculate_tiers(stack.bot[DB], stack.config, now=first) == 0  # before the hour
    on_time = first + timedelta(hours=1, minutes=5)
    # The window ends the day before; the activity 3 days ago must be inside it.
    stack.config.tiers.window_days = (on_time.date() - local_day(stack)).days + 10
    results = await asyncio.gather(*(recalculate_tiers(stack.bot[DB], stack.config, now=on_time) for _ in range(3)))
    assert sorted(results) == [0, 0, 2]  # two partners changed, once
    async with stack.bot[DB].session() as session:
        found = {p.name: p.tier for p in await session.scalars(select(Partner))}
        changes = [(c.old_tier, c.new_tier) for c in await session.scalars(select(TierChange).order_by(TierChange.id))]
    assert found == {"星河科技": "gold", "Blue Ocean": "silver", "Quiet Co": "registered"}
    assert sorted(changes) == [("gold", "silver"), ("registered", "gold")]
    [up] = [m.body["content"] for m in await stack.sim.wait_for_bot_messages("p1", 1)]
    assert up.startswith("🎉 星河科技 的伙伴等级已由注册升为金牌（") and "独立点击 11，线索 2，成交额 ¥6,000" in up
    [down] = [m.body["content"] for m in await stack.sim.wait_for_bot_messages("p2", 1)]
    assert "Blue Ocean 的伙伴等级已由金牌调整为银牌" in down
    [summary] = [m.body["content"] for m in await stack.sim.wait_for_bot_messages("admin1", 1)]
    assert "星河科技 注册→金牌" in summary and "Blue Ocean 金牌→银牌" in summary
    async with stack.bot[DB].session() as session:  # no change, no message (p3 is not in the simulator's directory)
        recipients = set(await session.scalars(select(OutboxMessage.recipient)))
    assert recipients == {"p1", "p3", "p2", "admin1"}
    assert await recalculate_tiers(stack.bot[DB], stack.config, now=on_time + timedelta(days=3)) == 0  # once a month


def test_a_tier_needs_all_its_non_zero_thresholds() -> None:
    rules = {"silver": tiers.Threshold(3, 1, Decimal(0)), "gold": tiers.Threshold(10, 0, Decimal(5000))}
    def standing(clicks: int, leads: int, revenue: int):  # type: ignore[no-untyped-def]
        return tiers.stats.Standing(1, "x", None, 0, clicks, leads, 0, Decimal(revenue))
    assert tiers.tier_for(standing(10, 0, 5000), rules) == "gold"  # gold ignores leads (threshold 0)
    assert tiers.tier_for(standing(10, 0, 4999), rules) == "registered"  # not gold; silver needs a lead
    assert tiers.tier_for(standing(3, 1, 0), rules) == "silver"
    assert tiers.tier_for(standing(2, 5, 10**6), rules) == "registered"


async def test_a_pool_can_be_kept_for_higher_tiers(stack: Stack) -> None:
    from tests.test_pool import add_leads
    await add_leads(stack.config.database.url)  # leads 1 and 2 are in the public pool
    async with stack.bot[DB].session() as session:
        await set_overrides(session, None, {"min_tier": "silver"})
    [listing] = await stack.ask("p2", "pool")
    assert "#1" not in listing and "#2" not in listing
    [refused] = await stack.ask("p2", "claim 1")
    assert refused == "Sorry: leads in this pool are for silver partners and above."
    async with stack.bot[DB].session() as session:
        (await session.scalar(select(Partner).where(Partner.name == "Blue Ocean"))).tier = "silver"
    assert (await stack.ask("p2", "claim 1"))[0].startswith("Lead #1 is yours")


async def test_assignment_by_capability_prefers_higher_tiers(sqlite_url: str) -> None:
    await seed(sqlite_url, [MemberRow(0, "admin1", "A", "admin", "", "", ()),
                            MemberRow(0, "g1", "Gold One", "partner", "Gold Co", "", ()),
                            MemberRow(0, "s1", "Silver One", "partner", "Silver Co", "", ()),
                            MemberRow(0, "r1", "Reg One", "partner", "Reg Co", "", ())])
    config = make_config(sqlite_url)
    config.admin.api_token = ADMIN_TOKEN
    config.pool.max_held = 1
    stack = await start_stack(config)
    try:
        async with stack.bot[DB].session() as session:
            for name, tier, industries in (("Gold Co", "gold", ["制造"]), ("Silver Co", "silver", ["制造", "金融"]),
                                           ("Reg Co", "registered", ["制造", "金融", "零售"])):
                partner = await session.scalar(select(Partner).where(Partner.name == name))
                partner.tier, partner.industries = tier, industries
        async with admin_http(stack) as http:
            async with http.post("/api/assignment-rules", json={"min_tier": "silver"}) as r:
                assert r.status == 201 and (await r.json())["partner_id"] is None
            async with http.post("/api/assignment-rules", json={"min_tier": "platinum"}) as r:
                assert r.status == 422
            owners = []
            for i, industry in enumerate(["制造", "制造", "金融", "零售", "制造"]):
                async with http.post("/api/leads", json={"name": f"客户{i}", "phone": f"1390000020{i}",
                                                         "industry": industry}) as r:
                    owners.append((await r.json())["owner_id"])
        async with stack.bot[DB].session() as session:
            names = {m.id: m.userid for m in [await get_member(session, u) for u in ("g1", "s1", "r1")]}
        # 制造 → gold first; then gold is full (max_held 1) → silver; 金融 → only silver could, but it is
        # full; 零售 → nobody silver or above does it; the last 制造 → everyone able is full.
        assert [names.get(o) for o in owners] == ["g1", "s1", None, None, None]
    finally:
        await stack.stop()
