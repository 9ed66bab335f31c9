"""canonical phones

Stored lead phones written with full-width or other scripts' digits (13８００１３８０００,
١٣٨٠٠١٣٨٠٠٠) become their canonical ASCII form, so de-duplication and the fraud rules see one
phone. A form lead's dedupe_key (form:TASK:PHONE:DAY) holds the phone and is recomputed with it.
Where that makes two leads share a key (the same person for the same task and day, once typed
with full-width digits and once without), the earliest keeps the key and the later ones' key is
set to NULL: both leads stay, nothing is merged or deleted. A phone that is not a valid mobile
number even in ASCII digits is left as typed (the invalid_phone fraud rule sees it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 00:40:00
"""
import re
import unicodedata

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

# A copy of store.leads.normalize_phone as of this migration: a migration must not change its
# meaning when the application's code changes later.
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_SEPARATORS = re.compile(r"[\s\-()]")
_INVISIBLE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _canonical(raw: str) -> str | None:
    text = unicodedata.normalize("NFKC", _INVISIBLE.sub("", raw))
    digits = _SEPARATORS.sub("", "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text))
    digits = digits.removeprefix("+86") if digits.startswith("+86") else digits
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits if _MOBILE.match(digits) else None


def _new_key(key: str | None, old_phone: str, phone: str) -> str | None:
    parts = (key or "").split(":")
    if len(parts) == 4 and parts[0] == "form" and parts[2] == old_phone:
        return ":".join((parts[0], parts[1], phone, parts[3]))
    return key


def upgrade() -> None:
    bind = op.get_bind()
    leads = sa.table('leads', sa.column('id', sa.Integer), sa.column('phone', sa.String),
                     sa.column('dedupe_key', sa.String))
    rows = bind.execute(sa.text("SELECT id, phone, dedupe_key FROM leads ORDER BY created_at, id")).all()
    phones: dict[int, str] = {}
    wanted: dict[int, str | None] = {}  # id -> its dedupe_key after the migration
    for lead_id, phone, key in rows:
        canonical = _canonical(phone)
        if canonical is not None and canonical != phone:
            phones[lead_id] = canonical
            wanted[lead_id] = _new_key(key, phone, canonical)
        else:
            wanted[lead_id] = key
    keepers: dict[str, int] = {}
    for lead_id, _, _ in rows:  # oldest first: the earliest lead keeps a shared key
        key = wanted[lead_id]
        if key is not None and keepers.setdefault(key, lead_id) != lead_id:
            wanted[lead_id] = None
    changed = [(lead_id, wanted[lead_id]) for lead_id, _, key in rows if wanted[lead_id] != key]
    # Free every key that moves first: the unique constraint is checked after each statement.
    for lead_id, _ in changed:
        bind.execute(leads.update().where(leads.c.id == lead_id).values(dedupe_key=None))
    for lead_id, key in changed:
        if key is not None:
            bind.execute(leads.update().where(leads.c.id == lead_id).values(dedupe_key=key))
    for lead_id, phone in phones.items():
        bind.execute(leads.update().where(leads.c.id == lead_id).values(phone=phone))


def downgrade() -> None:
    # The digits people typed are not kept: the canonical phones stay (they are valid for 0015 too).
    pass
