"""One phone, one canonical form: full-width (１３８) and Arabic-Indic (١٣٨) digits are stored, compared
and checked as 13800138000 by the form, the CSV import, the admin API and the fraud rules; migration
0016 canonicalises rows stored before."""
import asyncio
from datetime import datetime, timezone

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import DB
from store import fraud, leads as lead_store, links as link_store, tasks as task_store
from store.db import Database, migrate
from store.members import CsvRejected, get_member
from store.models import Flag, Lead
from tests.conftest import Stack, admin_http, sql_rows
from tests.test_landing import GOOD, leads, open_form
from tests.test_links import BROWSER, link_code, task_for_p1

ASCII, FULL_WIDTH, ARABIC_INDIC = "13800138000", "13８００１３８０００", "١٣٨٠٠١٣٨٠٠٠"


def full_width(digits: str) -> str:
    return digits.translate({ord(d): ord(d) + 0xFF10 - 0x30 for d in "0123456789"})


def arabic_indic(digits: str) -> str:
    return digits.translate({ord(d): ord(d) + 0x0660 - 0x30 for d in "0123456789"})


@pytest.mark.parametrize("raw", [ASCII, FULL_WIDTH, ARABIC_INDIC, "۱۳۸۰۰۱۳۸۰۰۰", "＋８６　１３８－００１３－８０００",
                                 "138 0013 8000\u202c"])
def test_every_way_of_writing_one_phone_is_one_canonical_phone(raw: str) -> None:
    assert lead_store.normalize_phone(raw) == ASCII


@pytest.mark.parametrize("raw", ["²3800138000", "1380013800", "13800138000٠"])
def test_other_scripts_do_not_make_invalid_numbers_valid(raw: str) -> None:
    assert lead_store.normalize_phone(raw) is None


async def flags(stack: Stack) -> list[tuple[str, int]]:
    """Every flag after a scan (the stack's own periodic scan may have run first)."""
    async with stack.bot[DB].session() as session:
        await fraud.scan(session, stack.config.fraud, stack.config.server.timezone)
    async with stack.bot[DB].session() as session:
        return sorted((f.rule, f.count) for f in await session.scalars(select(Flag)))


async def submit(stack: Stack, code: str, phone: str) -> int:
    async with aiohttp.ClientSession(headers={"User-Agent": BROWSER}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        token = await open_form(stack, http, code)
        async with http.post(f"{stack.bot_url}/l/{code}", data={**GOOD, "phone": phone, "csrf": token}) as response:
            return response.status


async def test_one_person_through_the_form_in_three_scripts_is_one_lead_and_another_partner_is_flagged(
        stack: Stack) -> None:
    await task_for_p1(stack)
    code = await link_code(stack)
    assert [await submit(stack, code, phone) for phone in (ASCII, full_width(ASCII), arabic_indic(ASCII))] == [200, 200, 200]
    [lead] = await leads(stack)
    assert lead.phone == ASCII

    async with stack.bot[DB].session() as session:  # the same person through Blue Ocean's link for another task
        task = await task_store.create_task(session, title="Autumn", url="https://brand.example/autumn", creator=None)
        other = (await link_store.get_or_create_link(session, task, await get_member(session, "p2"), "link")).code
    assert await submit(stack, other, FULL_WIDTH) == 200
    assert await flags(stack) == [("duplicate_phone", 1)]
    assert sorted(lead.phone for lead in await leads(stack)) == [ASCII, ASCII]


async def test_a_phone_stored_around_the_intake_in_other_digits_is_flagged_invalid(stack: Stack) -> None:
    async with stack.bot[DB].session() as session:
        p1 = await get_member(session, "p1")
        session.add(Lead(name="L", phone=FULL_WIDTH, source="form:link", partner_id=p1.partner_id, owner_id=p1.id,
                         status="claimed"))
    assert await flags(stack) == [("invalid_phone", 1)]


async def test_csv_import_and_admin_api_store_and_compare_the_canonical_phone(api_stack: Stack) -> None:
    header = ",".join(lead_store.LEAD_CSV_COLUMNS) + "\n"
    with pytest.raises(CsvRejected) as rejected:  # one file, one person twice
        lead_store.parse_leads_csv(header + f"王总,甲公司,{ASCII},,,,\n王总,甲公司,{ARABIC_INDIC},,,,\n", set())
    assert "already on line 2" in rejected.value.errors[0]
    rows = lead_store.parse_leads_csv(header + f"王总,甲公司,{FULL_WIDTH},,,,\n", set())
    async with api_stack.bot[DB].session() as session:
        created, skipped = await lead_store.import_leads(session, rows)
        assert len(created) == 1 and skipped == []
        created, skipped = await lead_store.import_leads(
            session, lead_store.parse_leads_csv(header + f"王总,甲公司,{ARABIC_INDIC},,,,\n", set()))
        assert created == [] and len(skipped) == 1
    async with admin_http(api_stack) as http:
        async with http.post("/api/leads", json={"name": "王总", "company": "甲公司", "phone": ASCII}) as r:
            assert r.status == 409
        async with http.post("/api/leads", json={"name": "李总", "company": "乙公司", "phone": FULL_WIDTH}) as r:
            assert (r.status, (await r.json())["phone"]) == (201, ASCII)
    assert sorted(lead.phone for lead in await leads(api_stack)) == [ASCII, ASCII]


async def _rows_after_migration(url: str) -> list[tuple]:
    """Leads stored at 0015 with phones as typed, then `migrate` to head: what each row became."""
    await asyncio.to_thread(migrate, url, "0015")
    # id, phone, dedupe_key, created_at; lead 2 is the earliest of three ways to write one phone for
    # one task and day, so it keeps the key
    rows = [
        (1, "13900000001", "form:1:13900000001:20261130", datetime(2026, 11, 30, 2, tzinfo=timezone.utc)),
        (2, full_width("13900000001"), f"form:1:{full_width('13900000001')}:20261130",
         datetime(2026, 11, 30, 1, tzinfo=timezone.utc)),
        (3, arabic_indic("13900000001"), f"form:1:{arabic_indic('13900000001')}:20261130",
         datetime(2026, 11, 30, 3, tzinfo=timezone.utc)),
        (4, full_width("13900000002"), f"form:2:{full_width('13900000002')}:20261130",
         datetime(2026, 11, 30, 4, tzinfo=timezone.utc)),
        (5, full_width("123"), None, datetime(2026, 11, 30, 5, tzinfo=timezone.utc)),  # no mobile number: left as typed
    ]
    db = Database(url)
    try:
        async with db.session() as session:
            session.add_all([Lead(id=i, name="L", phone=phone, source="form:link", dedupe_key=key, created_at=at,
                                  updated_at=at) for i, phone, key, at in rows])
    finally:
        await db.dispose()
    await asyncio.to_thread(migrate, url, "head")
    return await sql_rows(url, "SELECT id, phone, dedupe_key FROM leads ORDER BY id")


EXPECTED = [(1, "13900000001", None), (2, "13900000001", "form:1:13900000001:20261130"), (3, "13900000001", None),
            (4, "13900000002", "form:2:13900000002:20261130"), (5, full_width("123"), None)]


async def test_migration_0016_canonicalises_stored_phones(empty_database_url: str) -> None:
    assert await _rows_after_migration(empty_database_url) == EXPECTED
