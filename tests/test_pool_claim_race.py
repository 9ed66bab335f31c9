"""A claim that waited for the same member's other claim: on PostgreSQL a claim is one statement whose
snapshot is taken before it waits for the member's row lock, so what the member holds must be read
again once it has the lock, or both claims slip under max_held."""
import asyncio

from sqlalchemy import text

from store import pool
from store.db import Database
from store.members import get_member
from store.models import Lead
from tests.conftest import seed
from tests.test_pool import add_leads


async def _wait_until_a_claim_waits_for_a_lock(db: Database) -> None:
    """Until another connection's statement of this database waits for a row lock (the second claim)."""
    for _ in range(1000):
        async with db.single_statement() as session:
            waiting = await session.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"))
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second claim never waited for the first one's lock")


async def test_a_claim_that_waited_for_its_members_other_claim_counts_it(postgres_url: str) -> None:
    await seed(postgres_url)
    first_lead, second_lead, *_ = await add_leads(postgres_url)
    db = Database(postgres_url)
    rules = pool.RuleBook(pool.PoolRules(max_held=1, timezone="Asia/Shanghai"))

    async def second_claim() -> str:
        async with db.session() as session:
            try:
                await pool.claim(session, await get_member(session, "p1"), second_lead, rules)
                return "claimed"
            except pool.Refusal as refusal:
                return refusal.en

    try:
        async with db.session() as session:
            await pool.claim(session, await get_member(session, "p1"), first_lead, rules)  # holds p1's row lock
            second = asyncio.create_task(second_claim())
            await _wait_until_a_claim_waits_for_a_lock(db)
        # The first claim is committed now; the second one, waiting until then, must see it.
        assert await second == "you already hold 1 open leads, the most allowed (1); win, lose or return one first"
        async with db.session() as session:
            assert (await session.get(Lead, second_lead)).owner_id is None
    finally:
        await db.dispose()
