"""The truth of the figures partners are paid by: generated histories (members, tasks, deliveries,
shares, content copies (a content item's link and share), clicks with bots, retried batches and held
ones, leads from links and from the pool, claims, assignments, wins, held leads, touches) against a brute-force recount written here in plain Python
over the raw rows, independently of store/stats.py and store/attribution.py. Every figure of the
funnel (report, digest, exports) for tasks, content items, partners and members, the leaderboards
(me, tiers, top content) and roi (tasks, content items, partners) under all four models."""
import random
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from store import attribution
from store import links as link_store
from store import report_figures
from store import stats
from store.db import Database
from store.members import MemberRow
from store.models import Click, ContentItem, Lead, LeadEvent, LeadTouch, Member, OutboxMessage, Share, Task, TrackedLink, utcnow
from store.stats import Scope
from store.tasks import TASK_CARD
from tests.conftest import MEMBERS, seed

ZONE = "Asia/Shanghai"
CENT = Decimal("0.01")
MORE = [MemberRow(0, "p3", "王芳", "partner", "星河科技", "", ()), MemberRow(0, "p4", "Zhao", "partner", "Blue Ocean", "", ())]


@dataclass
class History:
    """The raw rows as generated, kept in plain Python for the recount."""

    members: list[Any]
    tasks: list[Any]
    contents: list[Any]
    links: dict[int, Any]
    shares: list[Any]
    outbox: list[Any]
    clicks: list[dict[str, Any]]  # as stored (each once), with "held"
    leads: list[Any]
    events: list[Any]
    touches: list[Any]
    held_click_ids: set[int] = field(default_factory=set)


async def generate(db: Database, rng: random.Random) -> History:
    now = utcnow()

    def when() -> datetime:
        return now - timedelta(seconds=rng.randint(0, 40 * 86400))

    async with db.session() as session:
        members = list(await session.scalars(select(Member).where(Member.role == "partner")))
        members[-1].active = False  # one has left: their figures still count for their company
        tasks = [Task(title=f"T{i}", target_url="https://x.example", status="active") for i in range(3)]
        session.add_all(tasks)
        await session.flush()
        contents = [ContentItem(kind="link", title=f"C{i}", url="https://c.example") for i in range(2)]
        session.add_all(contents)
        await session.flush()
        links = [TrackedLink(code=secrets.token_hex(6), task_id=t.id, member_id=m.id, channel="link")
                 for t in tasks for m in members]
        # A member's copy of a content item: its link, and (the first time) a share of the item.
        copies = [(c, m) for c in contents for m in members if rng.random() < 0.7]
        links += [TrackedLink(code=secrets.token_hex(6), content_id=c.id, member_id=m.id, channel="link") for c, m in copies]
        session.add_all(links)
        await session.flush()
        shares = [Share(task_id=rng.choice(tasks).id, member_id=rng.choice(members).id, channel="link", created_at=when())
                  for _ in range(120)]
        shares += [Share(content_id=c.id, member_id=m.id, channel="link", created_at=when()) for c, m in copies]
        outbox = [OutboxMessage(channel="wecom", recipient=m.userid, kind="card", payload={}, purpose=purpose,
                                task_id=t.id, status=rng.choice(["sent", "sent", "failed"]), sent_at=when())
                  for t in tasks for m in members for purpose in (TASK_CARD, "reminder") if rng.random() < 0.7]
        session.add_all(shares + outbox)
    visitors = [f"v{i}" for i in range(60)]
    clicks = [{"event_id": secrets.token_hex(8), "link_id": rng.choice(links).id, "at": when(),
               "visitor_id": rng.choice(visitors), "ip_hash": "h", "user_agent": "", "referrer": "",
               "is_bot": rng.random() < 0.15, "is_unique": rng.random() < 0.6} for _ in range(1200)]
    for start in range(0, len(clicks), 300):
        async with db.session() as session:
            await link_store.insert_clicks(session, clicks[start:start + 300], ZONE)
    async with db.session() as session:  # a batch written twice (a retry) counts once
        await link_store.insert_clicks(session, clicks[:300], ZONE)
    async with db.session() as session:  # a fraud flag holds some human clicks, as fraud.scan does
        stored = {c.event_id: c for c in await session.scalars(select(Click))}
        held_ids = {c.id for c in stored.values() if not c.is_bot and rng.random() < 0.1}
        held = (await session.execute(update(Click).where(Click.id.in_(held_ids)).values(held=True)
                                      .returning(Click.link_id, Click.at, Click.is_bot, Click.is_unique))).all()
        await link_store.bump_daily(session, held, ZONE, hold=True)
    for c in clicks:
        c["id"] = stored[c["event_id"]].id
        c["held"] = c["id"] in held_ids

    leads, events, touches = [], [], []
    async with db.session() as session:
        for i in range(150):
            link = rng.choice(links + [None] * 4)
            sharer = next(m for m in members if m.id == link.member_id) if link else None
            created = when()
            lead = Lead(name=f"L{i}", phone=f"139{i:08d}", source="form:link" if link else "import", created_at=created,
                        link_id=link.id if link else None, task_id=link.task_id if link else None,
                        partner_id=sharer.partner_id if sharer else None, held=rng.random() < 0.1)
            if sharer is not None and rng.random() < 0.8:
                lead.owner_id, how = sharer.id, ("assigned", "sharer")
            elif rng.random() < 0.6:  # claimed from the pool, or given by a rule
                lead.owner_id, how = rng.choice(members).id, rng.choice([("claimed", ""), ("assigned", "rule #1")])
            else:
                how = None
            lead.status = rng.choice(["claimed", "following", "won", "won", "lost"]) if lead.owner_id else "new"
            if lead.status == "won":
                lead.won_amount = Decimal(rng.randint(1, 9_999_999)) / 100
                lead.won_at = min(now, created + timedelta(seconds=rng.randint(0, 20 * 86400)))
            session.add(lead)
            await session.flush()
            leads.append(lead)
            if how:
                events.append(LeadEvent(lead_id=lead.id, kind=how[0], member_id=lead.owner_id, note=how[1], at=created))
            if lead.owner_id is None and rng.random() < 0.3:  # claimed once, then returned
                events += [LeadEvent(lead_id=lead.id, kind="claimed", member_id=rng.choice(members).id, at=created),
                           LeadEvent(lead_id=lead.id, kind="returned", member_id=None, at=created)]
            if link is not None:
                for c in rng.sample([c for c in clicks if not c["is_bot"] and c["at"] <= created] or [None], 1):
                    if c is not None:
                        touches.append(LeadTouch(lead_id=lead.id, link_id=c["link_id"], click_id=c["id"], kind="click",
                                                 at=c["at"]))
                touches += [LeadTouch(lead_id=lead.id, link_id=rng.choice(links).id, click_id=c["id"], kind="click",
                                      at=c["at"]) for c in rng.sample([c for c in clicks if not c["is_bot"]], rng.randint(0, 4))]
                touches.append(LeadTouch(lead_id=lead.id, link_id=link.id, click_id=None, kind="form", at=created))
        session.add_all(events + touches)
    return History(members, tasks, contents, {link.id: link for link in links}, shares, outbox, clicks, leads, events, touches,
                   held_ids)


class Recount:
    """The definitions of the README's stats section, counted the slow, obvious way."""

    def __init__(self, h: History, period: stats.Period) -> None:
        self.h, self.period = h, period
        self.member = {m.id: m for m in h.members}

    def in_period(self, at: datetime | None) -> bool:
        return at is not None and self.period.first_day <= at.astimezone(ZoneInfo(ZONE)).date() <= self.period.last_day

    def members_of(self, scope: Scope) -> set[int] | None:
        if scope.member_id is not None:
            return {scope.member_id}
        if scope.partner_id is not None:
            return {m.id for m in self.h.members if m.partner_id == scope.partner_id}
        return None

    def funnel(self, scope: Scope) -> dict[str, Any]:
        who = self.members_of(scope)
        by_userid = {m.userid: m.id for m in self.h.members}

        def ok(task_id: int | None, content_id: int | None, member_id: int | None) -> bool:
            return (scope.task_id is None or task_id == scope.task_id) and (who is None or member_id in who) \
                and (scope.content_id is None or content_id == scope.content_id)

        def content_of(lead: Any) -> int | None:  # the content item whose copy's link brought the lead
            return self.h.links[lead.link_id].content_id if lead.link_id else None

        cards = [o for o in self.h.outbox if o.purpose == TASK_CARD and o.status == "sent" and self.in_period(o.sent_at)
                 and ok(o.task_id, None, by_userid[o.recipient])]
        shares = [s for s in self.h.shares if self.in_period(s.created_at) and ok(s.task_id, s.content_id, s.member_id)]
        clicks = [c for c in self.h.clicks if self.in_period(c["at"])
                  and ok(self.h.links[c["link_id"]].task_id, self.h.links[c["link_id"]].content_id,
                         self.h.links[c["link_id"]].member_id)]
        counted = [c for c in clicks if not c["is_bot"] and not c["held"]]
        cohort = [lead for lead in self.h.leads if self.in_period(lead.created_at)
                  and ok(lead.task_id, content_of(lead), self.h.links[lead.link_id].member_id if lead.link_id else None)]
        taken_ids = {e.lead_id for e in self.h.events if e.kind in ("claimed", "assigned") and e.member_id}
        leads = [lead for lead in cohort if not lead.held]
        deals = [lead for lead in self.h.leads if lead.status == "won" and self.in_period(lead.won_at) and not lead.held
                 and ok(lead.task_id, content_of(lead), lead.owner_id)]
        return {
            "reached": len({by_userid[o.recipient] for o in cards} | {s.member_id for s in shares}),
            "sharers": len({s.member_id for s in shares}), "shares": len(shares), "deliveries": len(cards),
            "clicks": len(counted), "unique_clicks": sum(1 for c in counted if c["is_unique"]),
            "bot_clicks": sum(1 for c in clicks if c["is_bot"]), "held_clicks": sum(1 for c in clicks if c["held"]),
            "leads": len(leads), "taken": sum(1 for lead in leads if lead.id in taken_ids),
            "won": sum(1 for lead in leads if lead.status == "won"), "held_leads": len(cohort) - len(leads),
            "deals": len(deals), "revenue": str(sum((d.won_amount for d in deals), Decimal(0)).quantize(CENT)),
        }

    def standings(self) -> dict[int, tuple[int, int, int, int, Decimal]]:
        """member id → (shares, unique clicks, leads brought, deals held, revenue held)."""
        table = {}
        for m in self.h.members:
            f = self.funnel(Scope(member_id=m.id))
            table[m.id] = (f["shares"], f["unique_clicks"], f["leads"], f["deals"], Decimal(f["revenue"]))
        return table

    def credit(self, amount: Decimal, n: int, model: str) -> list[Decimal]:
        if model == "first":
            shares = [Decimal(1)] + [Decimal(0)] * (n - 1)
        elif model == "last":
            shares = [Decimal(0)] * (n - 1) + [Decimal(1)]
        elif model == "linear" or n <= 2:
            shares = [Decimal(1) / n] * n
        else:
            shares = [Decimal("0.4")] + [Decimal("0.2") / (n - 2)] * (n - 2) + [Decimal("0.4")]
        exact = [amount * s for s in shares]
        parts = [e.quantize(CENT, rounding=ROUND_DOWN) for e in exact]
        for i in sorted(range(n), key=lambda i: (-(exact[i] - parts[i]), i))[:int((amount - sum(parts)) / CENT)]:
            parts[i] += CENT
        return parts

    def attribution(self, model: str) -> tuple[dict[int, Decimal], dict[int | None, Decimal], Decimal, dict[int, Decimal]]:
        by_task: dict[int, Decimal] = defaultdict(Decimal)
        by_content: dict[int, Decimal] = defaultdict(Decimal)
        by_partner: dict[int | None, Decimal] = defaultdict(Decimal)
        unattributed = Decimal(0)
        for lead in self.h.leads:
            if lead.status != "won" or lead.held or not self.in_period(lead.won_at):
                continue
            mine = sorted((t for t in self.h.touches if t.lead_id == lead.id and t.click_id not in self.h.held_click_ids),
                          key=lambda t: (t.at, t.id))
            if not mine:
                unattributed += lead.won_amount
                continue
            for touch, part in zip(mine, self.credit(lead.won_amount, len(mine), model)):
                link = self.h.links[touch.link_id]
                if link.task_id is not None:
                    by_task[link.task_id] += part
                if link.content_id is not None:
                    by_content[link.content_id] += part
                by_partner[self.member[link.member_id].partner_id] += part
        return ({k: v for k, v in by_task.items() if v}, {k: v for k, v in by_partner.items() if v}, unattributed,
                {k: v for k, v in by_content.items() if v})


async def points_match(db: Database, h: History) -> None:
    """The ledger's bases: a lead earns for the member whose link brought it, a win for the member
    who holds it (whatever its source), a closed day's unique clicks for the link's member; held
    ones earn nothing."""
    from bot.config import Config
    from store import points

    config = Config(source="test")
    config.server.timezone = ZONE
    now, p = utcnow(), config.points
    since = now - timedelta(days=p.settle_days)
    async with db.session() as session:
        worth = await points.worth(session, config.points, config.server.timezone, now)
    links, zone = h.links, ZoneInfo(ZONE)
    expected: dict[str, tuple[int, int]] = {}
    for lead in h.leads:
        if lead.link_id and lead.created_at >= since:
            expected[f"lead:{lead.id}"] = (links[lead.link_id].member_id, 0 if lead.held else p.lead)
        if lead.status == "won" and lead.won_at >= since:
            expected[f"won:{lead.id}"] = (lead.owner_id, 0 if lead.held else p.won_deal)
    days: dict[str, int] = defaultdict(int)
    first, today = since.astimezone(zone).date(), now.astimezone(zone).date()
    for c in h.clicks:
        day = c["at"].astimezone(zone).date()
        if first <= day < today:
            member_id = links[c["link_id"]].member_id
            days[f"clicks:{member_id}:{day.isoformat()}"] += int(c["is_unique"] and not c["is_bot"] and not c["held"])
    expected |= {basis: (int(basis.split(":")[1]), n * p.unique_click) for basis, n in days.items()}
    got = {basis: (w.member_id, w.points) for basis, w in worth.items() if basis.split(":")[0] in ("lead", "won", "clicks")}
    assert got == expected


async def report_figures_match(db: Database, scopes: list[Scope], period: stats.Period, fortnight: stats.Period,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`report` gets its funnel, leaderboards and trend at once (on PostgreSQL each on a connection of
    its own, while spare ones are free; else one after another): the same figures either way."""
    borrowed, on_its_own = [], report_figures._on_a_connection_of_its_own
    monkeypatch.setattr(report_figures, "_on_a_connection_of_its_own", lambda s, q: borrowed.append(q) or on_its_own(s, q))
    pool = db.engine.sync_engine.pool
    for scope in scopes:
        for taken in (0, report_figures.SPARE_CONNECTIONS):  # all spare connections free, then none
            monkeypatch.setitem(report_figures._Spare.in_use, pool, taken)
            async with db.session() as session:
                figures = await report_figures.report_figures(session, scope, period, fortnight)
                members = await stats.member_standings(session, period, scope.partner_id, scope.task_id, scope.content_id)
                partners = [] if scope.partner_id else await stats.partner_standings(session, members)
                content = [] if scope.content_id else await stats.content_standings(session, scope, period)
                assert (figures.funnel, figures.members, figures.partners, figures.trend, figures.content) == (
                    await stats.funnel(session, scope, period), members, partners,
                    await stats.trend(session, scope, fortnight), content), scope
            assert report_figures._Spare.in_use[pool] == taken  # what was borrowed is given back
    # Leaderboards and trend each on a connection of their own, only on PostgreSQL and only while free.
    assert len(borrowed) == (2 * len(scopes) if db.dialect == "postgresql" else 0)


@pytest.mark.clock_edges
@pytest.mark.parametrize("seed_value", [1, 2])
async def test_every_figure_matches_a_brute_force_recount(database_url: str, seed_value: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    await seed(database_url, [*MEMBERS, *MORE])
    db = Database(database_url)
    try:
        h = await generate(db, random.Random(seed_value))
        today = utcnow().astimezone(ZoneInfo(ZONE)).date()
        periods = [stats.parse_period(word, ZONE, today) for word in
                   ("today", "yesterday", "week", "month", "30d", f"{today - timedelta(days=20)}..{today - timedelta(days=9)}",
                    f"{today - timedelta(days=60)}..{today}")]
        m = h.members
        scopes = [Scope(), Scope(task_id=h.tasks[0].id), Scope(partner_id=m[0].partner_id),
                  Scope(member_id=m[1].id), Scope(task_id=h.tasks[1].id, partner_id=m[1].partner_id),
                  Scope(member_id=m[-1].id), Scope(content_id=h.contents[0].id),
                  Scope(content_id=h.contents[1].id, partner_id=m[0].partner_id)]
        covered, content_covered = 0, Decimal(0)
        for period in periods:
            recount = Recount(h, period)
            for scope in scopes:
                async with db.session() as session:
                    got = (await stats.funnel(session, scope, period)).as_dict()
                assert got == recount.funnel(scope), (scope, period)
                steps = [got[s] for s in ("reached", "sharers")] + [got[s] for s in ("leads", "taken", "won")]
                assert steps[1] <= steps[0] and steps[4] <= steps[3] <= steps[2]  # no rate over 100 %
                covered += got["clicks"] + got["leads"] + got["deals"]
                if scope.content_id is not None:
                    content_covered += got["shares"] + got["clicks"] + got["leads"] + got["deals"]
            async with db.session() as session:
                standings = await stats.member_standings(session, period)
                partners = {p.key: p for p in await stats.partner_standings(session, standings)}
            expected = recount.standings()
            assert {k: (s.shares, s.unique_clicks, s.leads, s.won, s.revenue) for k, s in standings.items()} == expected
            for partner_id in {x.partner_id for x in m}:
                mine = [expected[x.id] for x in m if x.partner_id == partner_id]
                p = partners[partner_id]
                assert (p.shares, p.unique_clicks, p.leads, p.won, p.revenue) == tuple(
                    sum((row[i] for row in mine), Decimal(0) if i == 4 else 0) for i in range(5))
            assert [s.key for s in stats.active(standings)] == [x.id for x in m if x.active]
            async with db.session() as session:  # the top-content board: each item's funnel figures
                board = await stats.content_standings(session, Scope(), period)
            expected_board = {}
            for c in h.contents:
                f = recount.funnel(Scope(content_id=c.id))
                if f["shares"] or f["unique_clicks"] or f["leads"]:
                    expected_board[c.id] = (f["shares"], f["unique_clicks"], f["leads"])
            assert {s.key: (s.shares, s.unique_clicks, s.leads) for s in board} == expected_board, period
            assert [s.key for s in board] == sorted(expected_board, key=lambda k: (
                -expected_board[k][1], -expected_board[k][2], -expected_board[k][0], k))
            for model in attribution.MODELS:
                async with db.session() as session:
                    result = await attribution.attribute(session, period, model)
                by_task, by_partner, unattributed, by_content = recount.attribution(model)
                assert {k: v for k, v in result.by_task.items() if v} == by_task, (model, period)
                assert {k: v for k, v in result.by_content.items() if v} == by_content, (model, period)
                content_covered += sum(by_content.values(), Decimal(0))
                assert {k: v for k, v in result.by_partner.items() if v} == by_partner, (model, period)
                assert result.unattributed == unattributed
                # Every model credits exactly the revenue won in the period: the funnel's deals.
                whole = recount.funnel(Scope())
                assert result.revenue == Decimal(whole["revenue"]) and result.won_leads == whole["deals"]
                # A touch is a task's or a content copy's: between them they credit all that was touched.
                assert sum(by_task.values(), Decimal(0)) + sum(by_content.values(), Decimal(0)) + unattributed \
                    == result.revenue
        assert covered > 1000  # the comparison really covered data, not empty periods
        assert content_covered > 100  # content items' figures and credits too

        await points_match(db, h)
        await report_figures_match(db, scopes, periods[3], periods[-1], monkeypatch)
        period = periods[-1]
        async with db.session() as session:
            trend = await stats.trend(session, Scope(), period)
        whole = Recount(h, period).funnel(Scope())
        assert sum(trend["unique_clicks"]) == whole["unique_clicks"] and sum(trend["shares"]) == whole["shares"]
        assert sum(trend["leads"]) == whole["leads"]
        for i, day in enumerate(period.days()):  # and each local day's figures are that day's recount
            one_day = Recount(h, stats.Period(day, day, ZONE, "")).funnel(Scope())
            assert [trend[k][i] for k in ("shares", "unique_clicks", "leads")] == \
                [one_day[k] for k in ("shares", "unique_clicks", "leads")], day
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


async def test_a_lead_taken_after_its_period_still_counts_as_taken(database_url: str) -> None:
    """The funnel follows the period's leads "so far": a take long after the period ended counts, one
    stamped a moment before its lead (another instance's clock) too; a take of an older lead does not
    make it one of the period's (the funnel reads only the takes since the period began)."""
    await seed(database_url, [*MEMBERS, *MORE])
    db = Database(database_url)
    today = utcnow().astimezone(ZoneInfo(ZONE)).date()
    period = stats.Period(today - timedelta(days=30), today - timedelta(days=20), ZONE, "")
    try:
        async with db.session() as session:
            member = await session.scalar(select(Member).where(Member.userid == "p1"))
            first, older = period.start, period.start - timedelta(days=5)
            leads = [Lead(name=f"L{i}", phone=f"139{i:08d}", source="import", created_at=at, owner_id=member.id,
                          status="claimed") for i, at in enumerate((first, first + timedelta(days=1), older))]
            session.add_all(leads)
            await session.flush()
            session.add_all([LeadEvent(lead_id=leads[0].id, kind="claimed", member_id=member.id, at=first - timedelta(seconds=2)),
                             LeadEvent(lead_id=leads[1].id, kind="assigned", member_id=member.id, at=period.end + timedelta(days=15)),
                             LeadEvent(lead_id=leads[2].id, kind="claimed", member_id=member.id, at=first + timedelta(days=2))])
        async with db.session() as session:
            got = await stats.funnel(session, Scope(), period)
        assert (got.leads, got.taken) == (2, 2)
    finally:
        await db.dispose()
