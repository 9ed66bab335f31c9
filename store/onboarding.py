"""Partners and invite codes: an admin creates a partner and an invite; partner staff join with
`join CODE` (DESIGN §1). A code expires, has a use limit and can be revoked; its last free use
goes to exactly one person even when several join at once (a conditional update decides)."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import dialect_insert
from store.errors import Refusal
from store.models import Invite, InviteUse, Member, Partner, utcnow
from store.partners import partner_by_name
from store.pool_rules import TIER_NAMES, TIERS  # noqa: F401 (one list of tiers for pools and partners)
from store.text import clean_text

TIER_WORDS = {"registered": "registered", "注册": "registered", "silver": "silver", "银牌": "silver",
              "gold": "gold", "金牌": "gold"}
# No 0/O or 1/I/L: codes are read off a screen and typed on a phone.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
MAX_DAYS, MAX_USES = 365, 10_000


class BadPartner(Refusal):
    """A partner that cannot be stored; `field` says which value (for the admin API)."""

    def __init__(self, field: str, en: str, zh: str) -> None:
        super().__init__(en, zh)
        self.field = field


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str:
    return text.strip().upper().replace("-", "").replace(" ", "")[:32]


def check_commission_rate(value: object) -> Decimal | None:
    """A partner's own commission rate: a fraction from 0 to 1, or None for its tier's rate."""
    if value is None:
        return None
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        rate = Decimal(-1)
    if isinstance(value, bool) or not rate.is_finite() or not 0 <= rate <= 1:
        raise BadPartner("commission_rate",
                         "commission_rate is a fraction from 0 to 1 (0.05 = 5 %), or null for the tier's rate",
                         "佣金比例须为 0 到 1 之间的小数（0.05 即 5%），或留空使用等级的比例")
    return rate


async def change_partner(session: AsyncSession, partner: Partner, **changes: Any) -> Partner:
    """Set some of region, industries, tier, commission_rate (checked first; BadPartner names the
    first that cannot be stored). Region and industries are cut to their column lengths."""
    unknown = sorted(set(changes) - {"region", "industries", "tier", "commission_rate"})
    if unknown:
        raise BadPartner(unknown[0], f"unknown or fixed field(s): {', '.join(unknown)}", f"未知或不可改的字段：{'、'.join(unknown)}")
    values: dict[str, Any] = {}
    if "commission_rate" in changes:
        values["commission_rate"] = check_commission_rate(changes["commission_rate"])
    if "region" in changes:
        values["region"] = clean_text(changes["region"])[:64]
    if "industries" in changes:
        values["industries"] = [clean_text(i)[:32] for i in changes["industries"]]
    if "tier" in changes:
        if changes["tier"] not in TIERS:
            raise BadPartner("tier", f"tier must be one of {', '.join(TIERS)}", "等级须为 注册、银牌 或 金牌")
        values["tier"] = changes["tier"]  # an admin's decision; the monthly recalculation may change it again
    for column, value in values.items():
        setattr(partner, column, value)
    await session.flush()
    return partner


async def create_partner(session: AsyncSession, name: str, region: str = "", industries: list[str] | None = None,
                         tier: str = "registered", commission_rate: object = None) -> Partner:
    name, region = clean_text(name), clean_text(region)
    industries = [clean_text(i) for i in industries or []]
    if not name or len(name) > 100:
        raise BadPartner("name", "a partner's name has 1 to 100 characters", "伙伴名称须为 1 到 100 个字")
    if len(region) > 64 or any(len(i) > 32 for i in industries):
        raise BadPartner("region", "the region has at most 64 characters, each industry at most 32",
                      "区域最多 64 个字，每个行业最多 32 个字")
    if tier not in TIERS:
        raise BadPartner("tier", f"the tier is one of {', '.join(TIERS)}", "等级须为 注册、银牌 或 金牌")
    if await partner_by_name(session, name) is not None:
        raise BadPartner("name", f"there is already a partner called {name}", f"已有名为 {name} 的伙伴")
    partner = Partner(name=name, region=region, industries=industries, tier=tier,
                      commission_rate=check_commission_rate(commission_rate))
    session.add(partner)
    await session.flush()
    return partner


async def create_invite(session: AsyncSession, partner: Partner, *, days: int, uses: int,
                        created_by: Member | None) -> Invite:
    if not 1 <= days <= MAX_DAYS:
        raise Refusal(f"an invite is valid for 1 to {MAX_DAYS} days", f"邀请有效期为 1 到 {MAX_DAYS} 天")
    if not 1 <= uses <= MAX_USES:
        raise Refusal(f"an invite can be used 1 to {MAX_USES} times", f"邀请可用次数为 1 到 {MAX_USES} 次")
    now = utcnow()
    invite = Invite(code=new_code(), partner_id=partner.id, max_uses=uses, uses=0, expires_at=now + timedelta(days=days),
                    created_by=created_by.id if created_by else None, created_at=now)
    session.add(invite)
    await session.flush()
    return invite


async def find_invite(session: AsyncSession, code: str) -> Invite | None:
    return await session.scalar(select(Invite).where(Invite.code == normalize_code(code)))


def why_unusable(invite: Invite | None, code: str, now: datetime, zone_name: str = "UTC") -> Refusal | None:
    from zoneinfo import ZoneInfo

    if invite is None:
        return Refusal(f"there is no invite code {normalize_code(code)[:12]}; check it with whoever sent it",
                       f"没有邀请码 {normalize_code(code)[:12]}，请与发送者核对")
    if invite.revoked_at is not None:
        return Refusal("this invite code was revoked; ask for a new one", "该邀请码已撤销，请索取新的邀请码")
    if invite.expires_at <= now:
        day = invite.expires_at.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%d")
        return Refusal(f"this invite code expired on {day}; ask for a new one", f"该邀请码已于 {day} 过期，请索取新的邀请码")
    if invite.uses >= invite.max_uses:
        return Refusal("this invite code has been used up; ask for a new one", "该邀请码的名额已用完，请索取新的邀请码")
    return None


async def join(session: AsyncSession, code: str, userid: str, name: str, zone_name: str = "UTC") -> tuple[Member, Partner]:
    """Make `userid` a member of the invite's partner, using one of its places."""
    name, now = clean_text(name), utcnow()
    invite = await find_invite(session, code)
    refusal = why_unusable(invite, code, now, zone_name)
    if refusal is not None:
        raise refusal
    assert invite is not None
    partner = await session.get(Partner, invite.partner_id)
    assert partner is not None
    member = await session.scalar(select(Member).where(Member.userid == userid))
    if member is not None and member.active:
        if member.partner_id == partner.id:
            raise Refusal(f"you are already a member of {partner.name}", f"您已是 {partner.name} 的成员")
        if member.role != "partner":
            raise Refusal("brand staff do not join a partner", "品牌方员工无需加入伙伴")
        if member.partner_id is not None:
            current = await session.get(Partner, member.partner_id)
            raise Refusal(f"you already belong to {current.name if current else 'another partner'}; "
                          "ask an admin to move you",
                          f"您已属于 {current.name if current else '其他伙伴'}，如需变更请联系管理员")
    # One savepoint for the place and the membership: a place is only taken by someone who joins.
    async with session.begin_nested():
        taken = await session.execute(
            update(Invite).where(Invite.id == invite.id, Invite.uses < Invite.max_uses, Invite.revoked_at.is_(None),
                                 Invite.expires_at > now)
            .values(uses=Invite.uses + 1).execution_options(synchronize_session=False))
        if taken.rowcount != 1:
            raise Refusal("this invite code has just been used up; ask for a new one", "该邀请码的名额刚刚用完，请索取新的邀请码")
        if member is None:
            insert = dialect_insert(session)
            member_id = await session.scalar(
                insert(Member).values(userid=userid, name=name[:64] or userid, role="partner", partner_id=partner.id,
                                      region=partner.region, industries=[], active=True, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["userid"]).returning(Member.id))
            if member_id is None:  # the same person, joining twice at the same moment
                raise Refusal(f"you are already a member of {partner.name}", f"您已是 {partner.name} 的成员")
            member = await session.get(Member, member_id)
            assert member is not None
        else:  # someone who left, or was imported without a partner
            member.partner_id, member.active, member.role = partner.id, True, "partner"
        session.add(InviteUse(invite_id=invite.id, member_id=member.id, at=now))
    await session.refresh(member)
    return member, partner


async def revoke(session: AsyncSession, code: str) -> Invite:
    invite = await find_invite(session, code)
    if invite is None:
        raise Refusal(f"there is no invite code {normalize_code(code)[:12]}", f"没有邀请码 {normalize_code(code)[:12]}")
    if invite.revoked_at is None:
        invite.revoked_at = utcnow()
        await session.flush()
    return invite
