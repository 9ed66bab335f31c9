"""Every chat command, tried by people who should not reach someone else's things: a partner of
another company, and a marketer at admin-only commands. Nothing of theirs changes and no full phone
number of a lead they do not hold appears in any reply."""
import asyncio
from collections.abc import AsyncIterator

import pytest

from sqlalchemy import func, select

from bot.app import DB
from handlers import COMMANDS
from store.models import Broadcast, Invite, Lead, LeadEvent, Partner, PointsEntry, Task
from tests.conftest import Stack, make_config, seed, start_stack
from tests.test_pool import PHONES, add_leads

ARGUMENTS = ["", "3", "#3", "3 looks fine", "3 50000", "3 2030-01-01 later", "1", "1 all confirm", "1 partner:星河科技 confirm",
             "星河科技", "partner 星河科技", "member p1", "task 1", "Title | https://x.example", "AAAA2222"]
ADMIN_ONLY = {c.name for c in COMMANDS if c.roles == frozenset({"admin"})}


MAY_SEND_TWO = ("report", "poster", "invite", "join")


async def say(stack: Stack, userid: str, text: str) -> list[str]:
    """Send a line and collect its replies (a report or poster may bring two: wait until they stop)."""
    before = len(stack.sim.bot_messages(userid))
    delivery = await stack.sim.send_text(userid, text)
    assert delivery.attempts[-1] == "200"
    await stack.sim.wait_for_bot_messages(userid, before + 1)
    while text.startswith(MAY_SEND_TWO):
        count = len(stack.sim.bot_messages(userid))
        await asyncio.sleep(0.3)
        if len(stack.sim.bot_messages(userid)) == count:
            break
    return [m.body.get("content", "") for m in stack.sim.bot_messages(userid)[before:]]


async def snapshot(stack: Stack) -> tuple:
    async with stack.bot[DB].session() as session:
        leads = (await session.execute(select(Lead.id, Lead.owner_id, Lead.status, Lead.pool_partner_id, Lead.won_amount)
                                       .order_by(Lead.id))).all()
        counts = [await session.scalar(select(func.count()).select_from(model))
                  for model in (Task, Broadcast, Invite, Partner, PointsEntry)]
        p1_events = await session.scalar(select(func.count()).select_from(LeadEvent).where(LeadEvent.lead_id == 3))
        tasks = (await session.execute(select(Task.id, Task.status, Task.title))).all()
        tiers = (await session.execute(select(Partner.name, Partner.tier))).all()
    return leads, counts, p1_events, tasks, tiers


@pytest.fixture
async def stack(sqlite_url: str) -> AsyncIterator[Stack]:
    """The standard stack, with WeCom's per-member limits raised: the sweep sends p2 hundreds of replies."""
    await seed(sqlite_url)
    config = make_config(sqlite_url)
    config.wecom.member_messages_per_minute = config.wecom.member_messages_per_hour = 100_000
    running = await start_stack(config, per_member_per_minute=100_000, per_member_per_hour=100_000)
    yield running
    await running.stop()


async def test_a_partner_of_another_company_reaches_nothing_of_theirs(stack: Stack) -> None:
    await add_leads(stack.config.database.url)  # lead 3 is in 星河科技's pool (p1's company)
    await stack.ask("p1", "claim 3")
    await stack.ask("mkt1", "newtask Spring | https://brand.example/spring")
    await stack.ask("mkt1", "broadcast 1 partner:星河科技 confirm")
    await stack.sim.wait_for_bot_messages("p1", 2)
    before = await snapshot(stack)

    replies = []
    for command in COMMANDS:
        for argument in ARGUMENTS:
            replies += await say(stack, "p2", f"{command.name} {argument}".strip())
    await asyncio.sleep(0.5)
    assert len(stack.sim.bot_messages("p2")) == len(replies)  # every reply was read with its own line
    # p2 may change only their own things (their own shares and links); nothing of p1's moved.
    after = await snapshot(stack)
    assert after[0] == before[0] and after[2:] == before[2:]
    assert after[1][1:] == before[1][1:]  # no broadcast, invite, partner or points entry was made
    held_by_p1 = PHONES[2]
    assert not [r for r in replies if held_by_p1 in r], "a full phone of p1's lead reached p2"
    for admin_command in ADMIN_ONLY:
        [refused] = await stack.ask("p2", f"{admin_command} 1")
        assert "is for admins only" in refused


async def test_marketers_cannot_use_admin_commands(stack: Stack) -> None:
    await add_leads(stack.config.database.url)
    before = await snapshot(stack)
    for name in sorted(ADMIN_ONLY):
        for argument in ARGUMENTS[:4]:
            [reply] = await stack.ask("mkt1", f"{name} {argument}".strip())
            assert "is for admins only" in reply, (name, reply)
    assert await snapshot(stack) == before
