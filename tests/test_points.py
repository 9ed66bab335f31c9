"""The incentive ledger: after random sequences of events, corrections and accrual runs it equals a
brute-force recomputation from the events, entries are never edited, and runs at once book once."""
import asyncio
import random
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.app import DB
from store import links as link_store
from store import points
from store.db import Database
from store.members import MemberRow
from store.models import Lead, Member, Partner, PointsEntry, Share, Task, TrackedLink, utcnow
from tests.conftest import MEMBERS, Stack, admin_http, make_config, seed

RATES = {"registered": Decimal("0"), "silver": Decimal("0.02"), "gold": Decimal("0.05")}
MORE = [MemberRow(0, "p3", "王芳", "partner", "星河科技", "", ())]


def brute_force(config, members, partners, shares, clicks, leads, today) -> dict[int, tuple[int, Decimal]]:  # type: ignore[no-untyped-def]
    """Points and commission per member straight from the events, by the rules in the issue."""
    p, zone = config.points, ZoneInfo(config.server.timezone)
    totals: dict[int, list] = {m.id: [0, Decimal(0)] for m in members}
    for task_id, member_id in {(s.task_id, s.member_id) for s in shares}:
        totals[member_id][0] += p.share
    for member_id, at, unique, bot in clicks:
        if unique and not bot and at.astimezone(zone).date() < today:
            totals[member_id][0] += p.unique_click
    partner_of = {m.id: m.partner_id for m in members}
    for lead, sharer_id in leads:
        if sharer_id is not None:
            totals[sharer_id][0] += p.lead
        if lead.status == "won":
            totals[lead.owner_id][0] += p.won_deal
            partner = partners[partner_of[lead.owner_id]]
            rate = partner.commission_rate if partner.commission_rate is not None else RATES[partner.tier]
            totals[lead.owner_id][1] += (lead.won_amount * rate).quantize(Decimal("0.01"))
    return {k: (v[0], v[1]) for k, v in totals.items()}


async def ledger_totals(db: Database) -> dict[int, tuple[int, Decimal]]:
    async with db.session() as session:
        rows = await session.execute(select(PointsEntry.member_id, func.sum(PointsEntry.points),
                                            func.sum(PointsEntry.commission)).group_by(PointsEntry.member_id))
        return {m: (int(pts), Decimal(c).quantize(Decimal("0.01"))) for m, pts, c in rows}


@pytest.mark.parametrize("seed_value", range(4))
async def test_ledger_equals_a_recomputation_after_random_sequences(database_url: str, seed_value: int) -> None:
    rng = random.Random(seed_value)
    await seed(database_url, [*MEMBERS, *MORE])
    config = make_config(database_url)
    db = Database(database_url)
    now = utcnow()
    today = now.astimezone(ZoneInfo(config.server.timezone)).date()
    shares, clicks, leads, seen_entries = [], [], [], {}
    try:
        async with db.session() as session:
            members = list(await session.scalars(select(Member).where(Member.role == "partner")))
            tasks = [Task(title=f"T{i}", target_url="https://x.example", status="active") for i in range(2)]
            session.add_all(tasks)
            await session.flush()
            links = {(t.id, m.id): TrackedLink(code=f"k{t.id}-{m.id}", task_id=t.id, member_id=m.id, channel="link")
                     for t in tasks for m in members}
            session.add_all(links.values())
        for step in range(60):
            action = rng.choice(["share", "clicks", "lead", "win", "rate", "unwin", "accrue", "accrue"])
            async with db.session() as session:
                member, task = rng.choice(members), rng.choice(tasks)
                link = links[(task.id, member.id)]
                if action == "share":
                    share = Share(task_id=task.id, member_id=member.id, channel="link",
                                  created_at=now - timedelta(hours=rng.randint(0, 48)))
                    session.add(share)
                    shares.append(share)
                elif action == "clicks":
                    batch = [{"event_id": f"s{seed_value}-{step}-{i}", "link_id": link.id,
                              "at": now - timedelta(hours=rng.randint(0, 72)), "visitor_id": "v", "ip_hash": "h",
                              "user_agent": "", "referrer": "", "is_bot": rng.random() < 0.2,
                              "is_unique": rng.random() < 0.7} for i in range(rng.randint(1, 6))]
                    await link_store.insert_clicks(session, batch, config.server.timezone)
                    clicks += [(member.id, c["at"], c["is_unique"], c["is_bot"]) for c in batch]
                elif action == "lead":
                    lead = Lead(name="L", phone=f"1390{seed_value}{step:06d}", source="form:link", link_id=link.id,
                                task_id=task.id, partner_id=member.partner_id, status="claimed", owner_id=member.id,
                                created_at=now - timedelta(hours=rng.randint(0, 48)))
                    session.add(lead)
                    leads.append((lead, member.id))
                elif action == "win" and leads:
                    lead = rng.choice(leads)[0]
                    lead = await session.get(Lead, lead.id)
                    lead.status, lead.won_amount, lead.won_at = "won", Decimal(rng.randint(1, 10**6)) / 100, now
                elif action == "unwin":  # an admin's correction: the deal fell through after all
                    won = [lead for lead, _ in leads if lead.status == "won"]
                    if won:
                        lead = await session.get(Lead, rng.choice(won).id)
                        lead.status, lead.won_amount, lead.won_at = "lost", None, None
                elif action == "rate":
                    partner = await session.get(Partner, rng.choice(members).partner_id)
                    partner.tier = rng.choice(list(RATES))
                    partner.commission_rate = rng.choice([None, Decimal("0.1")])
                elif action == "accrue":
                    await points.accrue(session, config.points, config.server.timezone, now)
                    seen_entries.update({e.ref: (e.points, e.commission) for e in await session.scalars(select(PointsEntry))})
            if action in ("win", "unwin"):  # keep the test's copies in step with the database
                async with db.session() as session:
                    leads = [(await session.get(Lead, lead.id), sharer) for lead, sharer in leads]
        await asyncio.gather(*(accrue_once(db, config, now) for _ in range(3)))  # several instances at once
        async with db.session() as session:
            partners = {p.id: p for p in await session.scalars(select(Partner))}
            leads = [(await session.get(Lead, lead.id), sharer) for lead, sharer in leads]
            entries = list(await session.scalars(select(PointsEntry)))
        expected = brute_force(config, members, partners, shares, clicks, leads, today)
        got = await ledger_totals(db)
        assert {m: got.get(m, (0, Decimal("0.00"))) for m in expected} == expected
        assert len({e.ref for e in entries}) == len(entries)
        # Append-only: every entry seen along the way is still there, unchanged.
        assert {e.ref: (e.points, e.commission) for e in entries if e.ref in seen_entries} == seen_entries
        async with db.session() as session:  # a run with nothing new books nothing
            assert await points.accrue(session, config.points, config.server.timezone, now) == 0
    finally:
        await db.dispose()


async def accrue_once(db: Database, config, now) -> int:  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return await points.accrue(session, config.points, config.server.timezone, now)


async def test_points_in_chat_and_the_monthly_statement(api_stack: Stack) -> None:
    from bot.jobs import send_monthly_statements
    stack = api_stack
    now = utcnow()
    async with stack.bot[DB].session() as session:
        p1 = await session.scalar(select(Member).where(Member.userid == "p1"))
        task = Task(title="T", target_url="https://x.example", status="active")
        session.add(task)
        await session.flush()
        session.add(Share(task_id=task.id, member_id=p1.id, channel="poster", created_at=now))
        session.add(Lead(name="L", phone="13900000001", source="form:link", status="won", owner_id=p1.id,
                         won_amount=Decimal(20000), won_at=now, created_at=now))
        (await session.get(Partner, p1.partner_id)).tier = "gold"
    async with stack.bot[DB].session() as session:
        assert await points.accrue(session, stack.config.points, stack.config.server.timezone) == 2
    [reply] = await stack.ask("p1", "积分")
    assert reply.startswith("您本月积分：51（佣金 ¥1,000）")  # share 1 + won 50; 5 % of 20,000
    [english] = await stack.ask("p1", "points")
    assert english.startswith("Your points this month: 51 (commission ¥1,000)")

    month = now.astimezone(ZoneInfo(stack.config.server.timezone)).strftime("%Y-%m")
    async with admin_http(stack) as http:
        async with http.get("/api/points/statement", params={"partner": "星河科技", "month": month}) as r:
            body = await r.json()
        assert (body["points"], body["commission"], body["tier"]) == (51, "1000.00", "gold")
        assert sorted(row["kind"] for row in body["rows"]) == ["share", "won"]
        async with http.get("/api/points/statement", params={"partner": "星河科技", "month": month, "format": "csv"}) as r:
            assert (await r.text()).splitlines()[0] == "member,name,kind,basis,points,commission,at"
        for params, status in (({"partner": "Nobody", "month": month}, 404), ({"partner": "星河科技", "month": "11/2026"}, 400)):
            async with http.get("/api/points/statement", params=params) as r:
                assert r.status == status

    next_month = (now.astimezone(ZoneInfo(stack.config.server.timezone)).replace(day=28) + timedelta(days=4)).replace(
        day=1, hour=stack.config.stats.digest_hour, minute=5)
    sent = await asyncio.gather(*(send_monthly_statements(stack.bot[DB], stack.config, now=next_month) for _ in range(3)))
    assert sorted(sent) == [0, 0, 1]
    [statement] = [m.body["content"] for m in await stack.sim.wait_for_bot_messages("p1", 3)][2:]
    assert statement.startswith(f"📒 {month} 积分结算：51 分，佣金 ¥1,000。")
