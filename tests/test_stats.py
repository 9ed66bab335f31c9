"""The funnel, leaderboards and trend against a brute-force count over generated data."""
import random
import secrets
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from store import links as link_store
from store import stats
from store.db import Database
from store.members import MemberRow
from store.models import Lead, LeadEvent, Member, OutboxMessage, Share, Task, TrackedLink, utcnow
from store.stats import Scope
from store.tasks import TASK_CARD
from tests.conftest import MEMBERS, seed

ZONE = "Asia/Shanghai"
MORE = [MemberRow(0, "p3", "王芳", "partner", "星河科技", "", ()), MemberRow(0, "p4", "Zhao", "partner", "Blue Ocean", "", ())]


async def generate(db: Database, rng: random.Random) -> dict:
    """Tasks, links, shares, deliveries, clicks (through the real insert path) and leads over 40 days."""
    now = utcnow()
    def when() -> object:
        return now - timedelta(seconds=rng.randint(0, 40 * 86400))
    async with db.session() as session:
        members = list(await session.scalars(select(Member).where(Member.role == "partner")))
        tasks = [Task(title=f"T{i}", target_url="https://x.example", status="active") for i in range(3)]
        session.add_all(tasks)
        await session.flush()
        links = [TrackedLink(code=secrets.token_hex(6), task_id=t.id, member_id=m.id, channel="link")
                 for t in tasks for m in members]
        session.add_all(links)
        await session.flush()
        shares = [Share(task_id=rng.choice(tasks).id, member_id=rng.choice(members).id, channel="link", created_at=when())
                  for _ in range(150)]
        session.add_all(shares)
        outbox = [OutboxMessage(channel="wecom", recipient=m.userid, kind="card", payload={}, purpose=purpose,
                                task_id=t.id, status=rng.choice(["sent", "sent", "failed"]), sent_at=when())
                  for t in tasks for m in members for purpose in (TASK_CARD, "reminder")]
        session.add_all(outbox)
    clicks = [{"event_id": secrets.token_hex(8), "link_id": rng.choice(links).id, "at": when(), "visitor_id": "v",
               "ip_hash": "h", "user_agent": "", "referrer": "", "is_bot": rng.random() < 0.15,
               "is_unique": rng.random() < 0.6} for _ in range(1500)]
    for start in range(0, len(clicks), 250):
        async with db.session() as session:
            await link_store.insert_clicks(session, clicks[start:start + 250], ZONE)
    async with db.session() as session:  # a batch written twice (a retry) counts once
        await link_store.insert_clicks(session, clicks[:250], ZONE)
    leads = []
    async with db.session() as session:
        for i in range(160):
            link = rng.choice(links + [None] * 6)
            sharer = next(m for m in members if link and m.id == link.member_id) if link else None
            status = rng.choice(["new", "claimed", "following", "won", "won", "lost"])
            lead = Lead(name=f"L{i}", phone=f"139{i:08d}", source="t", status=status, created_at=when(),
                        link_id=link.id if link else None, task_id=link.task_id if link else None,
                        partner_id=sharer.partner_id if sharer else None,
                        won_amount=Decimal(rng.randint(1, 99999)) if status == "won" else None)
            session.add(lead)
            await session.flush()
            claimed = status != "new" or rng.random() < 0.2  # some were claimed, then returned
            if claimed:
                session.add(LeadEvent(lead_id=lead.id, kind=rng.choice(["claimed", "assigned"]),
                                      member_id=rng.choice(members).id, at=lead.created_at))
            leads.append((lead, claimed))
    return {"members": members, "tasks": tasks, "links": links, "shares": shares, "outbox": outbox,
            "clicks": clicks, "leads": leads}


def brute_force(data: dict, scope: Scope, period: stats.Period) -> dict:
    members = {m.id: m for m in data["members"]}
    links = {link.id: link for link in data["links"]}

    def member_ok(member_id: int | None) -> bool:
        if scope.member_id is not None:
            return member_id == scope.member_id
        if scope.partner_id is not None:
            return member_id in members and members[member_id].partner_id == scope.partner_id
        return True

    def in_period(at) -> bool:  # type: ignore[no-untyped-def]
        return period.first_day <= at.astimezone(ZoneInfo(ZONE)).date() <= period.last_day

    def task_ok(task_id: int | None) -> bool:
        return scope.task_id is None or task_id == scope.task_id

    by_userid = {m.userid: m.id for m in data["members"]}
    clicks = [c for c in data["clicks"] if in_period(c["at"]) and task_ok(links[c["link_id"]].task_id)
              and member_ok(links[c["link_id"]].member_id)]
    leads = [(lead, claimed) for lead, claimed in data["leads"] if in_period(lead.created_at) and task_ok(lead.task_id)
             and (scope.member_id is None or (lead.link_id and links[lead.link_id].member_id == scope.member_id))
             and (scope.partner_id is None or lead.partner_id == scope.partner_id)]
    return {
        "deliveries": sum(1 for o in data["outbox"] if o.purpose == TASK_CARD and o.status == "sent"
                          and in_period(o.sent_at) and task_ok(o.task_id) and member_ok(by_userid[o.recipient])),
        "shares": sum(1 for s in data["shares"] if in_period(s.created_at) and task_ok(s.task_id) and member_ok(s.member_id)),
        "clicks": sum(1 for c in clicks if not c["is_bot"]),
        "unique_clicks": sum(1 for c in clicks if not c["is_bot"] and c["is_unique"]),
        "bot_clicks": sum(1 for c in clicks if c["is_bot"]),
        "leads": len(leads), "claimed": sum(1 for _, claimed in leads if claimed),
        "won": sum(1 for lead, _ in leads if lead.status == "won"),
        "revenue": str(sum((lead.won_amount for lead, _ in leads if lead.status == "won"), Decimal(0)).quantize(Decimal("0.01"))),
        "held_clicks": 0, "held_leads": 0,
    }


@pytest.mark.parametrize("seed_value", [1, 2])
async def test_funnel_matches_a_brute_force_count(database_url: str, seed_value: int) -> None:
    await seed(database_url, [*MEMBERS, *MORE])
    db = Database(database_url)
    try:
        data = await generate(db, random.Random(seed_value))
        today = utcnow().astimezone(ZoneInfo(ZONE)).date()
        periods = [stats.parse_period(word, ZONE, today) for word in
                   ("today", "week", "month", "30d", f"{today - timedelta(days=20)}..{today - timedelta(days=9)}",
                    f"{today - timedelta(days=60)}..{today}")]
        m = data["members"]
        scopes = [Scope(), Scope(task_id=data["tasks"][0].id), Scope(partner_id=m[0].partner_id),
                  Scope(member_id=m[1].id), Scope(task_id=data["tasks"][1].id, partner_id=m[1].partner_id)]
        checked = 0
        for period in periods:
            for scope in scopes:
                async with db.session() as session:
                    got = (await stats.funnel(session, scope, period)).as_dict()
                assert got == brute_force(data, scope, period), (scope, period)
                checked += got["clicks"] + got["leads"]
        assert checked > 1000  # the comparison really covered data, not empty periods

        period = periods[-1]
        async with db.session() as session:
            standings = await stats.member_standings(session, period)
            trend = await stats.trend(session, Scope(), period)
        for member in m:
            expected = brute_force(data, Scope(member_id=member.id), period)
            assert standings[member.id].unique_clicks == expected["unique_clicks"]
            assert standings[member.id].leads == expected["leads"] and str(standings[member.id].revenue.quantize(Decimal("0.01"))) == expected["revenue"]
        whole = brute_force(data, Scope(), period)
        assert sum(trend["unique_clicks"]) == whole["unique_clicks"] and sum(trend["shares"]) == whole["shares"]
        assert sum(trend["leads"]) == whole["leads"]
        async with db.session() as session:  # recounting from the click table gives the same daily rows
            before = (await stats.funnel(session, Scope(), period)).as_dict()
            await stats.rebuild_click_daily(session, ZONE)
        async with db.session() as session:
            assert (await stats.funnel(session, Scope(), period)).as_dict() == before
    finally:
        await db.dispose()


@pytest.mark.parametrize("word, error", [
    ("2026-13-01", "is not a period"), ("soon", "is not a period"), ("2026-11-10..2026-11-01", "ends before it starts"),
    ("2020-01-01..2026-01-01", "at most 366 days"),
    # The ends of the calendar have no start or end moment: refused with the range, not a 500.
    ("0001-01-01", "between 2000-01-01 and 2100-12-31"), ("9999-12-31", "between 2000-01-01 and 2100-12-31"),
    ("1999-12-31..2000-01-02", "between 2000-01-01 and 2100-12-31"),
])
def test_bad_periods(word: str, error: str) -> None:
    with pytest.raises(stats.BadPeriod, match=error):
        stats.parse_period(word, ZONE, utcnow().date())


def test_periods() -> None:
    from datetime import date
    today = date(2026, 11, 28)  # a Saturday
    assert stats.parse_period("week", ZONE, today).first_day == date(2026, 11, 23)
    assert stats.parse_period("本月", ZONE, today).first_day == date(2026, 11, 1)
    period = stats.parse_period("2026-11-1~2026-11-03", ZONE, today)
    assert (period.first_day, period.last_day, len(period.days())) == (date(2026, 11, 1), date(2026, 11, 3), 3)
    assert period.start.isoformat() == "2026-11-01T00:00:00+08:00"
