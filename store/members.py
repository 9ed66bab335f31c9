"""Members and partners: lookups and the all-or-nothing CSV import (DESIGN §8)."""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from store.db import chunked
from store.models import ROLES, Member, MemberTag, Partner
from store.text import clean_text

MEMBER_CSV_COLUMNS = ("userid", "name", "role", "partner", "region", "industries")
# Optional extra column: tags for broadcast targeting (`tag:NAME`), separated by ";".
OPTIONAL_CSV_COLUMNS = ("tags",)
# WeCom userids: 1-64 letters, digits and _ - . @ (what the admin console accepts).
USERID_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@dataclass(frozen=True)
class MemberRow:
    line: int
    userid: str
    name: str
    role: str
    partner: str
    region: str
    industries: tuple[str, ...]
    tags: tuple[str, ...] | None = None  # None: the file has no tags column, keep what is stored


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    partners_created: list[str] = field(default_factory=list)


Row = TypeVar("Row")


class CsvRejected(Exception):
    """The file has bad rows; nothing was imported. `errors` lists every one by line number."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} problem(s)")
        self.errors = errors

    @staticmethod
    def unless_fine(rows: list[Row], errors: list[str], noun: str) -> list[Row]:
        """The rows, or CsvRejected listing every bad line (a header with no rows is one)."""
        if not errors and not rows:
            errors.append(f"line 2: the file has a header but no {noun}")
        if errors:
            raise CsvRejected(errors)
        return rows


async def active_admins(session: AsyncSession) -> list[Member]:
    """Who gets the bot's notices meant for admins (digest, tier changes, new fraud flags)."""
    return list(await session.scalars(select(Member).where(Member.role == "admin", Member.active.is_(True))
                                      .order_by(Member.id)))


# Built once, as store/bindings.py's lookup for chat messages: building a statement costs more than running it.
_ACTIVE_MEMBER = select(Member).where(Member.userid == bindparam("userid"), Member.active.is_(True))


async def get_member(session: AsyncSession, userid: str) -> Member | None:
    return await session.scalar(_ACTIVE_MEMBER, {"userid": userid})


async def member_by_id(session: AsyncSession, member_id: int) -> Member | None:
    """Also one who left (inactive): callers decide what a former member may still be."""
    return await session.get(Member, member_id)


async def member_by_userid(session: AsyncSession, userid: str) -> Member | None:
    """Also one who left (inactive), unlike get_member."""
    return await session.scalar(select(Member).where(Member.userid == userid))


async def active_partner_member(session: AsyncSession, userid: str) -> Member | None:
    """Partner staff still active: the only members a lead may be given to."""
    return await session.scalar(select(Member).where(Member.userid == userid, Member.active.is_(True),
                                                     Member.role == "partner"))


async def members_by_ids(session: AsyncSession, member_ids: list[int]) -> dict[int, Member]:
    return {m.id: m for m in await session.scalars(select(Member).where(Member.id.in_(member_ids)))}


async def members_by_userids(session: AsyncSession, userids: list[str]) -> dict[str, Member]:
    return {m.userid: m for m in await session.scalars(select(Member).where(Member.userid.in_(userids)))}


async def active_members_of(session: AsyncSession, partner_id: int) -> list[Member]:
    return list(await session.scalars(select(Member).where(Member.partner_id == partner_id, Member.active.is_(True))))


async def member_names(session: AsyncSession, member_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Member id → (name, partner name or ""), for texts that name people instead of ids; members
    who left are named too, since history outlives them."""
    ids = sorted(set(member_ids))
    if not ids:
        return {}
    rows = await session.execute(select(Member.id, Member.name, Partner.name)
                                 .outerjoin(Partner, Partner.id == Member.partner_id).where(Member.id.in_(ids)))
    return {member_id: (name, partner or "") for member_id, name, partner in rows}


def parse_members_csv(text: str) -> list[MemberRow]:
    """Validate every row before anything is written; raise CsvRejected listing all bad rows."""
    text = text.removeprefix("\ufeff")  # files saved by Excel start with a byte-order mark
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    required = set(MEMBER_CSV_COLUMNS)
    if not required <= set(header) or not set(header) <= required | set(OPTIONAL_CSV_COLUMNS) \
            or len(set(header)) != len(header):
        raise CsvRejected([
            f"line 1: the header must be {','.join(MEMBER_CSV_COLUMNS)} (optionally also tags); "
            f"got {','.join(header) or '(empty file)'}"
        ])
    reader.fieldnames = header
    errors: list[str] = []
    rows: list[MemberRow] = []
    seen: dict[str, int] = {}
    try:
        for raw in reader:
            line = reader.line_num
            row_errors = []
            if None in raw or any(value is None for value in raw.values()):
                errors.append(f"line {line}: expected {len(header)} fields separated by commas")
                continue
            values = {key: clean_text(value) for key, value in raw.items()}
            userid, name, role = values["userid"], values["name"], values["role"].lower()
            partner, region = values["partner"], values["region"]
            industries = _split(values["industries"])
            tags = _split(values["tags"]) if "tags" in values else None
            if not USERID_PATTERN.match(userid):
                row_errors.append(f"userid {userid!r} must be 1-64 letters, digits or _-.@")
            elif userid.lower() in seen:
                row_errors.append(f"userid {userid!r} is already on line {seen[userid.lower()]}")
            if not name or len(name) > 64:
                row_errors.append("name must be 1-64 characters")
            if role not in ROLES:
                row_errors.append(f"role {values['role']!r} must be one of {', '.join(ROLES)}")
            if role == "partner" and not partner:
                row_errors.append("partner is required for role partner")
            if len(partner) > 100:
                row_errors.append("partner must be at most 100 characters")
            if len(region) > 64:
                row_errors.append("region must be at most 64 characters")
            if any(len(industry) > 32 for industry in industries):
                row_errors.append("each industry must be at most 32 characters")
            if any(len(tag) > 32 or ":" in tag for tag in tags or ()):
                row_errors.append("each tag must be at most 32 characters, without ':'")
            if row_errors:
                errors.append(f"line {line}: " + "; ".join(row_errors))
                continue
            seen[userid.lower()] = line
            rows.append(MemberRow(line, userid, name, role, partner, region, industries, tags))
    except csv.Error as err:
        errors.append(f"line {reader.line_num}: not valid CSV ({err})")
    return CsvRejected.unless_fine(rows, errors, "members")


def _set_tags(member: Member, tags: tuple[str, ...]) -> None:
    # Change only the difference: deleting and re-adding one (member, tag) key in a flush collides.
    member.tags = [t for t in member.tags if t.tag in tags] + [
        MemberTag(tag=tag) for tag in tags if tag not in member.tag_names
    ]


def _cleaned(row: MemberRow) -> MemberRow:
    return replace(row, name=clean_text(row.name), partner=clean_text(row.partner), region=clean_text(row.region),
                   industries=tuple(clean_text(i) for i in row.industries),
                   tags=None if row.tags is None else tuple(clean_text(t) for t in row.tags))


def _split(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in value.split(";") if part.strip()))


async def import_members(session: AsyncSession, rows: list[MemberRow]) -> ImportResult:
    """Upsert by userid inside the caller's transaction (so a failure imports nothing)."""
    result = ImportResult()
    partners = {p.name: p for p in await session.scalars(select(Partner))}
    existing: dict[str, Member] = {}
    for group in chunked([r.userid for r in rows]):  # a 40,000-row file is over asyncpg's argument limit
        existing.update((m.userid, m) for m in await session.scalars(
            select(Member).where(Member.userid.in_(group)).options(selectinload(Member.tags))))
    for row in rows:
        row = _cleaned(row)  # the sync from WeCom comes here without parse_members_csv
        partner = None
        if row.partner:
            partner = partners.get(row.partner)
            if partner is None:
                partner = Partner(name=row.partner, region=row.region)
                session.add(partner)
                partners[row.partner] = partner
                result.partners_created.append(row.partner)
        member = existing.get(row.userid)
        if member is None:
            member = Member(userid=row.userid)
            session.add(member)
            result.created += 1
        else:
            result.updated += 1
        member.name = row.name
        member.role = row.role
        member.partner = partner
        member.region = row.region
        member.industries = list(row.industries)
        member.active = True
        if row.tags is not None:
            _set_tags(member, row.tags)
    await session.flush()
    return result
