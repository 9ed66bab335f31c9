"""Random sequences of pool actions (claim, return, follow, won, lost, a day passing) by several
members: the invariants hold after every step, and every change of a lead has its event."""
import random
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from store import pool
from store.db import Database
from store.members import MemberRow, get_member
from store.models import Lead, LeadEvent, Member
from tests.conftest import seed

MEMBERS = [MemberRow(0, f"u{i}", f"U{i}", "partner", "P", "", ()) for i in range(4)]
RULES = pool.PoolRules(daily_claim_limit=3, max_held=2, cooldown_days=30, return_reason_required=True,
                       embargo_hours=0, timezone="Asia/Shanghai")


@pytest.mark.parametrize("seed_value", range(6))
async def test_random_action_sequences_keep_the_rules(sqlite_url: str, seed_value: int) -> None:
    rng = random.Random(seed_value)
    await seed(sqlite_url, MEMBERS)
    db = Database(sqlite_url)
    try:
        async with db.session() as session:
            session.add_all([Lead(name=f"L{i}", phone=f"1390000{i:04d}", source="t") for i in range(8)])
        events_expected = 0
        for _ in range(120):
            userid, lead_id = rng.choice(MEMBERS).userid, rng.randint(1, 8)
            action = rng.choice(["claim", "claim", "return", "follow", "won", "lost", "day"])
            async with db.session() as session:
                if action == "day":  # a day passes: move every event back a day
                    for event in await session.scalars(select(LeadEvent)):
                        event.at = event.at - timedelta(days=1)
                    continue
                member = await get_member(session, userid)
                try:
                    if action == "claim":
                        await pool.claim(session, member, lead_id, pool.RuleBook(RULES))
                    elif action == "return":
                        await pool.give_back(session, member, lead_id, "not ready", pool.RuleBook(RULES))
                    elif action == "follow":
                        await pool.follow_up(session, member, lead_id, "called")
                    elif action == "won":
                        await pool.win(session, member, lead_id, Decimal("100"))
                    else:
                        await pool.lose(session, member, lead_id, "no budget")
                    events_expected += 1
                except pool.Refusal:
                    pass
            await check_invariants(db, events_expected)
    finally:
        await db.dispose()


async def check_invariants(db: Database, events_expected: int) -> None:
    async with db.session() as session:
        leads = list(await session.scalars(select(Lead)))
        members = list(await session.scalars(select(Member)))
        for lead in leads:
            assert (lead.owner_id is None) == (lead.status == "new"), (lead.id, lead.status, lead.owner_id)
        for member in members:
            held = sum(1 for lead in leads if lead.owner_id == member.id and lead.status in pool.OPEN)
            assert held <= RULES.max_held
            claims_today = await session.scalar(select(func.count()).select_from(LeadEvent).where(
                LeadEvent.member_id == member.id, LeadEvent.kind == "claimed",
                LeadEvent.at >= pool._start_of_day(pool.utcnow(), RULES.timezone)))
            assert claims_today <= RULES.daily_claim_limit
        assert await session.scalar(select(func.count()).select_from(LeadEvent)) == events_expected
        # The owner of a lead is whoever claimed it last, and has not given it back since.
        for lead in leads:
            history = list(await session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead.id)
                                                 .order_by(LeadEvent.id)))
            holder = None
            for event in history:
                if event.kind == "claimed":
                    holder = event.member_id
                elif event.kind in ("returned", "recycled"):
                    holder = None
            if lead.status in pool.OPEN or lead.status in ("won", "lost"):
                assert lead.owner_id == holder
