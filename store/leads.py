"""Leads: intake (landing form today; CSV import and the pool come with the lead-pool work)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import dialect_insert
from store.assignment import auto_assign
from store.pool_rules import RuleBook
from store.models import Click, Lead, LeadEvent, LeadTouch, Member, utcnow
from store.ownership import hand_over
from store.text import ascii_digits, clean_text

# Mainland mobile numbers: 11 digits starting 13-19, optionally written with +86 / 86 and separators.
# ASCII digits only: `\d` also matches full-width and Arabic-Indic digits, which made one phone
# several (past de-duplication and the fraud rules).
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_SEPARATORS = re.compile(r"[\s\-()]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f<>]")


def normalize_phone(raw: str) -> str | None:
    """The canonical form (13800138000) that is stored and compared everywhere, or None if invalid."""
    digits = _SEPARATORS.sub("", ascii_digits(clean_text(raw)))
    digits = digits.removeprefix("+86") if digits.startswith("+86") else digits
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits if _MOBILE.match(digits) else None


def mask_phone(phone: str) -> str:
    """138****5678: what everyone but the holder and admins sees, and all that logs ever show."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "****"


@dataclass(frozen=True)
class LeadForm:
    name: str
    company: str
    phone: str
    region: str
    industry: str


FIELD_LIMITS = {"name": 32, "company": 64, "region": 32, "industry": 32}


def validate_form(values: dict[str, str], consent: bool) -> tuple[LeadForm | None, dict[str, str]]:
    """The form, or the problems by field (messages in Chinese first: the visitors are Chinese)."""
    problems: dict[str, str] = {}
    cleaned = {k: clean_text(values.get(k, "")) for k in ("name", "company", "phone", "region", "industry")}
    if not cleaned["name"]:
        problems["name"] = "请填写姓名 / Please enter your name"
    for field, limit in FIELD_LIMITS.items():
        if len(cleaned[field]) > limit:
            problems[field] = f"最多 {limit} 个字 / At most {limit} characters"
        elif _CONTROL.search(cleaned[field]):
            problems[field] = "含有不允许的字符 / Contains characters that are not allowed"
    phone = normalize_phone(cleaned["phone"])
    if phone is None:
        problems["phone"] = "请填写 11 位手机号 / Please enter an 11-digit mainland mobile number"
    if not consent:
        problems["consent"] = "请勾选同意后提交 / Please agree before submitting"
    if problems:
        return None, problems
    return LeadForm(cleaned["name"], cleaned["company"], phone or "", cleaned["region"], cleaned["industry"]), {}


def form_dedupe_key(phone: str, task_id: int | str, now: datetime, zone: str) -> str:
    """One lead per phone, task and local day: a double tap or a re-send the same day is the same lead."""
    return f"form:{task_id}:{phone}:{now.astimezone(ZoneInfo(zone)).strftime('%Y%m%d')}"


async def create_from_form(session: AsyncSession, form: LeadForm, *, sharer: Member | None, task_id: int | None,
                           link_id: int, channel: str, visitor_id: str, book: RuleBook) -> Lead | None:
    """A partner-sourced lead: it goes to the member who shared, protected for their pool's `protect_days`,
    with the visitor's earlier clicks (any tracked link) and this form fill as its touches.
    Without a sharer (they left) it waits in the pool. None: this phone already signed up for
    this task today (the unique key decides, also for two submissions at the same instant)."""
    now = utcnow()
    insert = dialect_insert(session)
    lead_id = await session.scalar(
        insert(Lead).values(
            name=form.name, company=form.company, phone=form.phone, region=form.region, industry=form.industry,
            source=f"form:{channel}", status="new", owner_id=None, partner_id=sharer.partner_id if sharer else None, task_id=task_id, link_id=link_id,
            visitor_id=visitor_id, consent_at=now,
            dedupe_key=form_dedupe_key(form.phone, task_id if task_id is not None else f"link{link_id}", now,
                                       book.of(None).timezone),
            protected_until=now + timedelta(days=book.of(sharer.partner_id).protect_days) if sharer else None, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(Lead.id))
    if lead_id is None:
        return None
    lead = await session.get(Lead, lead_id)
    assert lead is not None
    session.add(LeadEvent(lead_id=lead.id, kind="created", member_id=None, note=f"form via {channel}", at=now))
    if sharer is not None:
        # claimed_at stays empty as it always was for form leads: their clock runs from created_at.
        await hand_over(session, lead.id, sharer, kind="assigned", member_id=sharer.id, note="sharer", now=now,
                        claimed_at=None)
    else:
        await auto_assign(session, lead, book)
    clicks = (await session.execute(select(Click.id, Click.link_id, Click.at).where(
        Click.visitor_id == visitor_id, Click.is_bot.is_(False), Click.at <= now).order_by(Click.at))).all()
    session.add_all([LeadTouch(lead_id=lead.id, link_id=c.link_id, click_id=c.id, kind="click", at=c.at)
                     for c in clicks])
    session.add(LeadTouch(lead_id=lead.id, link_id=link_id, click_id=None, kind="form", at=now))
    await session.flush()
    return lead


async def touches(session: AsyncSession, lead_id: int) -> list[LeadTouch]:
    return list(await session.scalars(select(LeadTouch).where(LeadTouch.lead_id == lead_id).order_by(LeadTouch.at)))


async def get_lead(session: AsyncSession, lead_id: int) -> Lead | None:
    return await session.get(Lead, lead_id)


LEAD_CSV_COLUMNS = ("name", "company", "phone", "region", "industry", "source", "pool")
PUBLIC_POOL_WORDS = ("", "public", "公共")


@dataclass(frozen=True)
class LeadRow:
    line: int
    form: LeadForm
    source: str
    pool: str  # "" = public, else a partner's name


def parse_leads_csv(text: str, partner_names: set[str]) -> list[LeadRow]:
    """Validate every row first; raise CsvRejected listing all bad rows by line number."""
    import csv
    import io

    from store.members import CsvRejected

    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    if sorted(header) != sorted(LEAD_CSV_COLUMNS):
        raise CsvRejected([f"line 1: the header must be {','.join(LEAD_CSV_COLUMNS)}; got {','.join(header) or '(empty file)'}"])
    reader.fieldnames = header
    rows: list[LeadRow] = []
    errors: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        for raw in reader:
            line = reader.line_num
            if None in raw or any(v is None for v in raw.values()):
                errors.append(f"line {line}: expected {len(LEAD_CSV_COLUMNS)} fields separated by commas")
                continue
            values = {k: v.strip() for k, v in raw.items()}
            form, problems = validate_form(values, consent=True)
            messages = [f"{field}: {message.split(' / ')[-1]}" for field, message in problems.items()]
            source, pool = values["source"] or "import", values["pool"]
            if len(source) > 32:
                messages.append("source: At most 32 characters")
            if pool.lower() not in PUBLIC_POOL_WORDS and pool not in partner_names:
                messages.append(f"pool: no partner called {pool!r} (leave empty for the public pool)")
            if form is not None:
                key = (form.phone, form.company)
                if key in seen:
                    messages.append(f"the same phone and company are already on line {seen[key]}")
                seen.setdefault(key, line)
            if messages or form is None:
                errors.append(f"line {line}: " + "; ".join(messages))
                continue
            rows.append(LeadRow(line, form, source, "" if pool.lower() in PUBLIC_POOL_WORDS else pool))
    except csv.Error as err:
        errors.append(f"line {reader.line_num}: not valid CSV ({err})")
    return CsvRejected.unless_fine(rows, errors, "leads")


async def import_leads(session: AsyncSession, rows: list[LeadRow],
                       book: RuleBook | None = None) -> tuple[list[int], list[str]]:
    """Add the rows to their pools (ids of the new leads); a phone+company already stored is
    skipped and reported."""
    from store.models import Partner

    partners = {p.name: p.id for p in await session.scalars(select(Partner))}
    existing = set((await session.execute(select(Lead.phone, Lead.company).where(
        Lead.phone.in_([r.form.phone for r in rows])))).all())
    skipped: list[str] = []
    created: list[int] = []
    now = utcnow()
    for row in rows:
        if (row.form.phone, row.form.company) in existing:
            skipped.append(f"line {row.line}: {mask_phone(row.form.phone)} at {row.form.company or '—'} is already stored")
            continue
        lead = Lead(name=row.form.name, company=row.form.company, phone=row.form.phone, region=row.form.region,
                    industry=row.form.industry, source=row.source, status="new",
                    pool_partner_id=partners.get(row.pool), created_at=now, updated_at=now)
        session.add(lead)
        await session.flush()
        session.add(LeadEvent(lead_id=lead.id, kind="created", member_id=None, note=f"import line {row.line}", at=now))
        if book is not None:  # assignment rules may give it to a member straight away
            await auto_assign(session, lead, book)
        created.append(lead.id)
    await session.flush()
    return created, skipped
