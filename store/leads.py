"""Leads: intake (landing form today; CSV import and the pool come with the lead-pool work)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Click, Lead, LeadEvent, LeadTouch, Member, utcnow

# Mainland mobile numbers: 11 digits starting 13-19, optionally written with +86 / 86 and separators.
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_SEPARATORS = re.compile(r"[\s\-()]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f<>]")


def normalize_phone(raw: str) -> str | None:
    digits = _SEPARATORS.sub("", raw.strip())
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
    cleaned = {k: values.get(k, "").strip() for k in ("name", "company", "phone", "region", "industry")}
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


def form_dedupe_key(phone: str, task_id: int, now: datetime) -> str:
    """One lead per phone, task and day: a double tap or a re-send the same day is the same lead."""
    return f"form:{task_id}:{phone}:{now.strftime('%Y%m%d')}"


async def create_from_form(session: AsyncSession, form: LeadForm, *, sharer: Member | None, task_id: int,
                           link_id: int, channel: str, visitor_id: str, protect_days: int) -> Lead | None:
    """A partner-sourced lead: it goes to the member who shared, protected for `protect_days`,
    with the visitor's earlier clicks (any tracked link) and this form fill as its touches.
    Without a sharer (they left) it waits in the pool. None: this phone already signed up for
    this task today (the unique key decides, also for two submissions at the same instant)."""
    now = utcnow()
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    lead_id = await session.scalar(
        insert(Lead).values(
            name=form.name, company=form.company, phone=form.phone, region=form.region, industry=form.industry,
            source=f"form:{channel}", status="claimed" if sharer else "new", owner_id=sharer.id if sharer else None,
            partner_id=sharer.partner_id if sharer else None, task_id=task_id, link_id=link_id,
            visitor_id=visitor_id, consent_at=now, dedupe_key=form_dedupe_key(form.phone, task_id, now),
            protected_until=now + timedelta(days=protect_days) if sharer else None, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(Lead.id))
    if lead_id is None:
        return None
    lead = await session.get(Lead, lead_id)
    assert lead is not None
    session.add(LeadEvent(lead_id=lead.id, kind="created", member_id=None, note=f"form via {channel}", at=now))
    if sharer is not None:
        session.add(LeadEvent(lead_id=lead.id, kind="assigned", member_id=sharer.id, note="sharer", at=now))
    clicks = (await session.execute(select(Click.id, Click.link_id, Click.at).where(
        Click.visitor_id == visitor_id, Click.is_bot.is_(False), Click.at <= now).order_by(Click.at))).all()
    session.add_all([LeadTouch(lead_id=lead.id, link_id=c.link_id, click_id=c.id, kind="click", at=c.at)
                     for c in clicks])
    session.add(LeadTouch(lead_id=lead.id, link_id=link_id, click_id=None, kind="form", at=now))
    await session.flush()
    return lead


async def touches(session: AsyncSession, lead_id: int) -> list[LeadTouch]:
    return list(await session.scalars(select(LeadTouch).where(LeadTouch.lead_id == lead_id).order_by(LeadTouch.at)))
