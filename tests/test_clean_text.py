"""Names and notes people type keep no bidi controls (U+202E turns "王总" around in every list it
reaches) and no line/paragraph separators: the form, follow-up notes, the members CSV import, partners."""
import aiohttp
import pytest
from sqlalchemy import select

from bot.app import DB
from store.members import import_members, parse_members_csv
from store.models import LeadEvent, Member, Partner
from store.text import ascii_digits, clean_text, whole_number
from tests.conftest import Stack
from tests.test_landing import GOOD, leads, open_form
from tests.test_links import BROWSER, link_code, task_for_p1
from tests.test_pool import pool_stack  # noqa: F401 (a fixture)

RLO, LRI, PDI, LS, PS = "\u202e", "\u2066", "\u2069", "\u2028", "\u2029"
INVISIBLE = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


@pytest.mark.parametrize("raw, clean", [(f"{RLO}王总", "王总"), (f"王{LS}总{PS}", "王 总"), (f"a{LRI}b{PDI}\u200fc", "abc"),
                                        ("  plain  ", "plain")])
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


async def test_the_landing_form_stores_names_without_bidi_or_separators(stack: Stack) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        token = await open_form(stack, http, code)
        fields = {**GOOD, "name": f"王{RLO}女士", "company": f"华星{LS}制造", "region": f"{LRI}上海{PDI}",
                  "industry": f"制造{PS}", "csrf": token}
        async with http.post(f"{stack.bot_url}/l/{code}", data=fields) as response:
            assert response.status == 200
    [lead] = await leads(stack)
    assert (lead.name, lead.company, lead.region, lead.industry) == ("王女士", "华星 制造", "上海", "制造")


async def test_follow_up_notes_and_reasons_are_stored_clean(pool_stack: Stack) -> None:  # noqa: F811
    await pool_stack.ask("p1", "claim 1")
    await pool_stack.ask("p1", f"follow 1 已电话{RLO}沟通")
    await pool_stack.ask("p1", f"lost 1 预算{LRI}不足{PDI}")
    async with pool_stack.bot[DB].session() as session:
        notes = {e.kind: e.note for e in await session.scalars(select(LeadEvent).where(LeadEvent.lead_id == 1))}
    assert (notes["followed"], notes["lost"]) == ("已电话沟通", "预算不足")


async def test_members_import_stores_clean_names(stack: Stack) -> None:
    rows = parse_members_csv("userid,name,role,partner,region,industries\n"
                             f"p9,{RLO}赵六,partner,云帆{LS}科技,华北{PDI},制造{RLO}\n")
    async with stack.bot[DB].session() as session:
        await import_members(session, rows)
    async with stack.bot[DB].session() as session:
        member = await session.scalar(select(Member).where(Member.userid == "p9"))
        partner = await session.get(Partner, member.partner_id)
        stored = [member.name, member.region, *member.industries, partner.name]
    assert stored == ["赵六", "华北", "制造", "云帆 科技"]
    assert not INVISIBLE & set("".join(stored))


async def test_a_new_partner_from_chat_is_named_clean(stack: Stack) -> None:
    await stack.ask("admin1", f"newpartner 云帆{RLO}科技 | 华北 | 制造")
    async with stack.bot[DB].session() as session:
        assert await session.scalar(select(Partner.name).where(Partner.name.like("云帆%"))) == "云帆科技"


@pytest.mark.parametrize("text, max_digits, expected", [
    ("12", 9, 12), ("0", 1, 0), ("123456789", 9, 123456789), ("1234567890", 9, None), ("", 9, None),
    (" 12", 9, None), ("+12", 9, None), ("-1", 9, None), ("1.5", 9, None), ("¹", 9, None), ("١٢", 9, None),
    ("１２", 9, None), ("\U00010a40", 9, None)])
def test_whole_numbers_are_ascii_digits_only(text: str, max_digits: int, expected: int | None) -> None:
    assert whole_number(text, max_digits) == expected


def test_every_decimal_digit_becomes_ascii() -> None:
    assert ascii_digits("＃１２ ١٣٨ ¹") == "#12 138 1"
