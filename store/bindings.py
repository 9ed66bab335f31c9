"""Who a channel's user is: a WeCom userid is a member's userid; an id on any other channel (a WeChat
Official Account openid, ...) is bound to a member with a one-time code, so one person is one member
on every channel.

An admin issues a one-time code for a member (or a WeCom member asks for their own); the person sends
`绑定 CODE` on the other channel. A code works once, until it expires; a conditional UPDATE
decides when two followers send the same code at once.
"""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import Refusal
from store.models import BindingCode, InboxMessage, Member, MemberIdentity, utcnow
from store.onboarding import new_code, normalize_code

WECOM, WECHAT = "wecom", "wechat"
# The channel whose user ids are members' userids (WeCom); on every other channel a member is known
# by a MemberIdentity, bound with a code.
HOME = WECOM
# The outbox channel of messages addressed to a member wherever they are reached (bot/channels/member.py).
MEMBER_CHANNEL = "member"


# Built once: this runs for every chat message, and building a statement costs more than running it.
_HOME_MEMBER = select(Member).where(Member.userid == bindparam("user_id"), Member.active.is_(True))


async def member_for(session: AsyncSession, channel: str, user_id: str) -> Member | None:
    """The active member behind a channel's user id (a WeCom userid, a WeChat openid, ...)."""
    if channel == HOME:
        return await session.scalar(_HOME_MEMBER, {"user_id": user_id})
    return await session.scalar(select(Member).join(MemberIdentity).where(
        MemberIdentity.channel == channel, MemberIdentity.external_id == user_id, Member.active.is_(True)))


async def identity_of(session: AsyncSession, member: Member, channel: str) -> str | None:
    """The member's id on `channel`, if they are bound there."""
    if channel == HOME:
        return member.userid
    return await session.scalar(select(MemberIdentity.external_id).where(
        MemberIdentity.member_id == member.id, MemberIdentity.channel == channel))


async def issue_code(session: AsyncSession, member: Member, *, hours: int, by: Member | None,
                     push_there: bool) -> BindingCode:
    """`push_there`: once the code is used, the member's pushes go to the channel it was used on."""
    if not member.active:
        raise Refusal(f"{member.userid} is not an active member", f"{member.userid} 不是在用的成员")
    now = utcnow()
    code = BindingCode(code=new_code(), member_id=member.id, push_there=push_there,
                       expires_at=now + timedelta(hours=hours), created_by=by.id if by else None, created_at=now)
    session.add(code)
    await session.flush()
    return code


async def bind(session: AsyncSession, code_text: str, channel: str, external_id: str, zone_name: str = "UTC") -> Member:
    """Bind `external_id` on `channel` to the member the code was issued for; the code is spent only
    if this succeeds."""
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
    bound = await session.scalar(select(MemberIdentity).where(
        MemberIdentity.channel == channel, MemberIdentity.external_id == external_id))
    if bound is not None:
        holder = await session.get(Member, bound.member_id)
        if holder is not None and not holder.active:  # someone who has left: their id is free again
            await _forget(session, holder, channel)
        elif holder is not None and holder.id != member.id:
            raise Refusal(f"this account is already bound to {holder.name}; send 解绑 (unbind) first",
                          f"此账号已绑定 {holder.name}，如需更换请先发送“解绑”")
    # One savepoint: the code is spent exactly when the id is bound.
    try:
        await _spend_and_bind(session, row, member, channel, external_id)
    except IntegrityError:  # another member took this id at the same moment
        raise Refusal("this account was just bound to someone else; send 解绑 (unbind) first",
                      "此账号刚刚已绑定其他成员，如需更换请先发送“解绑”") from None
    return member


async def _spend_and_bind(session: AsyncSession, row: BindingCode, member: Member, channel: str,
                          external_id: str) -> None:
    now = utcnow()
    async with session.begin_nested():
        spent = await session.execute(
            update(BindingCode).where(BindingCode.id == row.id, BindingCode.used_at.is_(None),
                                      BindingCode.expires_at > now)
            .values(used_at=now, used_by=external_id).execution_options(synchronize_session=False))
        if spent.rowcount != 1:
            raise Refusal("this binding code has just been used; ask your admin for a new one",
                          "该绑定码刚刚已被使用，请向管理员索取新的绑定码")
        await attach(session, member, channel, external_id, push_there=row.push_there)


async def attach(session: AsyncSession, member: Member, channel: str, external_id: str, *, push_there: bool) -> None:
    """Make `external_id` the member's id on `channel` (a new phone replaces the old id there)."""
    await session.execute(delete(MemberIdentity).where(MemberIdentity.member_id == member.id,
                                                       MemberIdentity.channel == channel))
    session.add(MemberIdentity(channel=channel, external_id=external_id, member_id=member.id, created_at=utcnow()))
    if push_there:
        member.push_channel = channel
    await session.flush()


async def set_push_channel(session: AsyncSession, member: Member, channel: str) -> None:
    """Send the member's tasks and notices to `channel`, where they must be bound (WeCom needs none)."""
    if channel != HOME and await identity_of(session, member, channel) is None:
        raise Refusal("bind your WeChat first: send bindcode here, then the code to the official account",
                      "请先绑定微信：在这里发送“绑定码”，再把绑定码发到公众号")
    member.push_channel = channel
    await session.flush()


async def _forget(session: AsyncSession, member: Member, channel: str) -> None:
    await session.execute(delete(MemberIdentity).where(MemberIdentity.member_id == member.id,
                                                       MemberIdentity.channel == channel))
    if member.push_channel == channel:
        member.push_channel = HOME
    await session.flush()


async def unbind(session: AsyncSession, member: Member, channel: str) -> None:
    if await identity_of(session, member, channel) is None:
        raise Refusal("this account is not bound to you", "您尚未绑定此账号")
    await _forget(session, member, channel)


async def push_addresses(session: AsyncSession) -> dict[str, tuple[str, str]]:
    """userid -> (channel, id there) of every active member whose tasks and notices go to a channel
    other than WeCom and who is bound there (everyone else's go to WeCom, to their userid)."""
    rows = await session.execute(
        select(Member.userid, MemberIdentity.channel, MemberIdentity.external_id).join(MemberIdentity)
        .where(MemberIdentity.channel == Member.push_channel, Member.active.is_(True)))
    return {userid: (channel, external_id) for userid, channel, external_id in rows.all()}


async def recipients_of(session: AsyncSession, channel: str, external_id: str) -> list[str]:
    """Every outbox recipient that means this person on `channel`: the id, and the member's userid if bound."""
    userid = await session.scalar(select(Member.userid).join(MemberIdentity).where(
        MemberIdentity.channel == channel, MemberIdentity.external_id == external_id))
    return [external_id, userid] if userid else [external_id]


async def uses_wecom(session: AsyncSession, userid: str) -> bool:
    """Whether this member has ever written to the bot in WeCom (else WeCom may not know them at all)."""
    return await session.scalar(select(InboxMessage.id).where(
        InboxMessage.channel == WECOM, InboxMessage.user_id == userid).limit(1)) is not None
