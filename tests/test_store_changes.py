"""Store functions that change a task, a partner or where a member's pushes go: every entry point's
rules and writes, so the admin API and chat only call them."""
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from store import bindings, onboarding
from store import tasks as task_store
from store.db import Database
from store.errors import Refusal
from store.models import Member, utcnow


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


async def test_change_task_checks_every_field_before_writing_any(db: Database) -> None:
    async with db.session() as s:
        task = await task_store.create_task(s, title="Spring", url="https://example.com", creator=None)
        with pytest.raises(task_store.InvalidTask) as refused:
            await task_store.change_task(s, task, {"status": "active", "title": "New", "url": "ftp://x"})
        assert refused.value.field == "url" and (task.status, task.title) == ("draft", "Spring")
        task.auto_reminded_at = utcnow()
        await task_store.change_task(s, task, {"status": "active", "deadline": utcnow() + timedelta(days=1)})
        assert task.status == "active" and task.auto_reminded_at is None  # a new deadline, a new reminder
        with pytest.raises(task_store.InvalidTask, match="cannot go from active back to draft"):
            await task_store.change_task(s, task, {"status": "draft"})
        await task_store.change_task(s, task, {"status": "ended"})
        with pytest.raises(task_store.InvalidTask, match="an ended task cannot be edited"):
            await task_store.change_task(s, task, {"title": "Later"})
        with pytest.raises(task_store.InvalidTask, match="a new task is draft or active"):
            await task_store.create_task(s, title="X", url="https://example.com", creator=None, status="ended")


async def test_change_partner_refuses_a_bad_rate_and_changes_nothing(db: Database) -> None:
    async with db.session() as s:
        partner = await onboarding.create_partner(s, "星河科技", commission_rate="0.05")
        assert str(partner.commission_rate) == "0.05"
        with pytest.raises(onboarding.BadPartner) as refused:
            await onboarding.change_partner(s, partner, region="华东", commission_rate=2)
        assert refused.value.field == "commission_rate" and partner.region == ""
        with pytest.raises(onboarding.BadPartner):
            await onboarding.change_partner(s, partner, name="Other")
        await onboarding.change_partner(s, partner, region=" 华东\u202e ", tier="gold", commission_rate=None)
        assert (partner.region, partner.tier, partner.commission_rate) == ("华东", "gold", None)


async def test_pushes_go_only_to_a_bound_channel(db: Database) -> None:
    async with db.session() as s:
        member = Member(userid="li", name="Li", role="partner")
        s.add(member)
        await s.flush()
        with pytest.raises(Refusal):
            await bindings.set_push_channel(s, member, bindings.WECHAT)
        await bindings.attach(s, member, bindings.WECHAT, "openid-li", push_there=False)
        await bindings.set_push_channel(s, member, bindings.WECHAT)
        assert member.push_channel == bindings.WECHAT
