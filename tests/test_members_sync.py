"""`partnerbot members sync`: a WeCom department's members (user/list, through the simulator) upserted
like the CSV import; disabled people skipped; WeCom's refusals reported."""
import argparse
import asyncio

import pytest
from sqlalchemy import select

from bot.app import DB
from bot.cli import EXIT_BAD_DATA, EXIT_OK, cmd_members_sync
from bot.config import ConfigError
from store.models import Member
from tests.conftest import Stack


def sync(stack: Stack, department: int, partner: str = "星河科技", role: str = "partner") -> int:
    args = argparse.Namespace(department=department, partner=partner, role=role)
    return cmd_members_sync(stack.config, args)


async def test_a_department_is_synced_and_disabled_people_skipped(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.sim.directory.update({"w1": "吴一", "w2": "吴二", "w3": "吴三"})
    stack.sim.departments[7] = {"w1", "w2", "w3"}
    stack.sim.disabled.add("w3")
    assert await asyncio.to_thread(sync, stack, 7) == EXIT_OK
    output = capsys.readouterr().out
    assert "skipped w3: not active in WeCom (status 2)" in output and "synced 2 members from department 7 (2 new" in output
    async with stack.bot[DB].session() as session:
        found = {m.userid: m for m in await session.scalars(select(Member).where(Member.userid.like("w%")))}
        assert sorted(found) == ["w1", "w2"] and found["w1"].partner.name == "星河科技" and found["w1"].name == "吴一"
        found["w1"].region = "华东"
    stack.sim.directory["w1"] = "吴一一"  # renamed in WeCom
    assert await asyncio.to_thread(sync, stack, 7) == EXIT_OK
    async with stack.bot[DB].session() as session:
        w1 = await session.scalar(select(Member).where(Member.userid == "w1"))
        assert (w1.name, w1.region) == ("吴一一", "华东")  # the name follows WeCom; the region is kept
    [reply] = await stack.ask("p1", "help")  # nothing else changed
    assert reply.startswith("Hi 张伟")


async def test_wecom_refusals_and_bad_arguments(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(sync, stack, 99) == EXIT_BAD_DATA
    assert "WeCom refused user/list for department 99" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="need --partner"):
        sync(stack, 1, partner="")
