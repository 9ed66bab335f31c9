"""Binding a WeChat Official Account openid to a member, so one person is one member on both channels.

An admin issues a one-time code for a member (or a WeCom member asks for their own); the person sends
`绑定 CODE` to the Official Account. A code works once, until it expires; a conditional UPDATE
decides when two followers send the same code at once.
"""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import Refusal
from store.models import BindingCode, InboxMessage, Member, utcnow
from store.onboarding import new_code, normalize_code

WECOM, WECHAT = "wecom", "wechat"
# The outbox channel of messages addressed to a member wherever they are reached (bot/channels/member.py).
MEMBER_CHANNEL = "member"


async def member_for(session: AsyncSession, channel: str, user_id: str) -> Member | None:
    """The active member behind a channel's user id (a WeCom userid or a WeChat openid)."""
    column = Member.wechat_openid if channel == WECHAT else Member.userid
    return await session.scalar(select(Member).where(column == user_id, Member.active.is_(True)))


async def issue_code(session: AsyncSession, member: Member, *, hours: int, by: Member | None,
                     push_to_wechat: bool) -> BindingCode:
    if not member.active:
        raise Refusal(f"{member.userid} is not an active member", f"{member.userid} 不是在用的成员")
    now = utcnow()
    code = BindingCode(code=new_code(), member_id=member.id, push_to_wechat=push_to_wechat,
                       expires_at=now + timedelta(hours=hours), created_by=by.id if by else None, created_at=now)
    session.add(code)
    await session.flush()
    return code


async def bind(session: AsyncSession, code_text: str, openid: str, zone_name: str = "UTC") -> Member:
    """Bind `openid` to the member the code was issued for; the code is spent only if this succeeds."""
    now = utcnow()
    code = normalize_code(code_text)
    row = await session.scalar(select(BindingCode).where(BindingCode.code == code))
    if row is None:
        raise Refusal(f"there is no binding code {code[:12]}; check it with whoever gave it to you",
                      f"没有绑定码 {code[:12]}，请与发码人核对")
    if row.used_at is not None:
        raise Refusal("this binding code has already been used; ask your admin for a new one",
                      "该绑定码已被使用，请向管理员索取新的绑定码")
    if row.expires_at <= now:
        when = row.expires_at.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%d %H:%M")
        raise Refusal(f"this binding code expired at {when}; ask for a new one", f"该绑定码已于 {when} 过期，请索取新的绑定码")
    member = await session.get(Member, row.member_id)
    if member is None or not member.active:
        raise Refusal("the member this code was made for is no longer active", "该绑定码对应的成员已停用")
    bound = await session.scalar(select(Member).where(Member.wechat_openid == openid))
    if bound is not None and not bound.active:  # someone who has left: their WeChat is free again
        bound.wechat_openid, bound.push_channel = None, WECOM
        await session.flush()
        bound = None
    if bound is not None and bound.id != member.id:
        raise Refusal(f"this WeChat is already bound to {bound.name}; send 解绑 (unbind) first",
                      f"此微信已绑定 {bound.name}，如需更换请先发送“解绑”")
    # One savepoint: the code is spent exactly when the openid is bound.
    try:
        await _spend_and_bind(session, row, member, openid)
    except IntegrityError:  # another member took this openid at the same moment
        raise Refusal("this WeChat was just bound to someone else; send 解绑 (unbind) first",
                      "此微信刚刚已绑定其他成员，如需更换请先发送“解绑”") from None
    return member


async def _spend_and_bind(session: AsyncSession, row: BindingCode, member: Member, openid: str) -> None:
    now = utcnow()
    async with session.begin_nested():
        spent = await session.execute(
            update(BindingCode).where(BindingCode.id == row.id, BindingCode.used_at.is_(None),
                                      BindingCode.expires_at > now)
            .values(used_at=now, used_by=openid).execution_options(synchronize_session=False))
        if spent.rowcount != 1:
            raise Refusal("this binding code has just been used; ask your admin for a new one",
                          "该绑定码刚刚已被使用，请向管理员索取新的绑定码")
        member.wechat_openid = openid  # a new code for a member moves them to a new WeChat (a new phone)
        if row.push_to_wechat:
            member.push_channel = WECHAT
        await session.flush()


async def unbind(session: AsyncSession, member: Member) -> None:
    if member.wechat_openid is None:
        raise Refusal("no WeChat is bound to you", "您尚未绑定微信")
    member.wechat_openid = None
    member.push_channel = WECOM
    await session.flush()


async def wechat_push_addresses(session: AsyncSession) -> dict[str, str]:
    """userid -> openid of every active member whose tasks and notices go to WeChat (the others': WeCom)."""
    rows = await session.execute(select(Member.userid, Member.wechat_openid).where(
        Member.push_channel == WECHAT, Member.wechat_openid.is_not(None), Member.active.is_(True)))
    return {userid: openid for userid, openid in rows.all()}


async def recipients_of(session: AsyncSession, openid: str) -> list[str]:
    """Every outbox recipient that means this follower: the openid, and the member's userid if bound."""
    userid = await session.scalar(select(Member.userid).where(Member.wechat_openid == openid))
    return [openid, userid] if userid else [openid]


async def uses_wecom(session: AsyncSession, userid: str) -> bool:
    """Whether this member has ever written to the bot in WeCom (else WeCom may not know them at all)."""
    return await session.scalar(select(InboxMessage.id).where(
        InboxMessage.channel == WECOM, InboxMessage.user_id == userid).limit(1)) is not None
