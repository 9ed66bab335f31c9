"""Binding another channel (the WeChat Official Account) to a member: bind / 绑定 CODE (sent there),
bindcode / 绑定码 [USERID] (a code for yourself, or an admin's code for someone outside WeCom), unbind /
解绑, and notify / 通知 [微信|企业微信] (where tasks and notices go)."""
from __future__ import annotations

from zoneinfo import ZoneInfo

from handlers.replies import Text
from handlers.context import ADMIN, FOLLOWER, ArgError, Context
from store import bindings
from store import outbox as outbox_store
from store.errors import Refusal
from store.members import USERID_PATTERN, get_member
from store.onboarding import normalize_code


async def requeue_parked(ctx: Context, userid: str) -> None:
    """Their address changed: what waited for them (WeChat's 48-hour window) may go out now."""
    await outbox_store.release_waiting(ctx.session, [userid], waiting_days=ctx.config.wechat.waiting_days)


def parse_code(text: str) -> str:
    code = normalize_code(text)
    if not code:
        raise ArgError("give the binding code: bind CODE", "请写绑定码：绑定 绑定码")
    return code


def parse_userid(text: str) -> str | None:
    userid = text.strip()
    if userid and not USERID_PATTERN.match(userid):
        raise ArgError(f"“{userid[:20]}” is not a user id", f"“{userid[:20]}”不是用户ID")
    return userid or None


async def bind(ctx: Context, code: str) -> Text:
    if ctx.channel == bindings.HOME:
        raise Refusal("send the binding code to the brand's WeChat official account, not here",
                      "请在品牌的微信公众号里发送绑定码，而不是这里")
    en, zh = ACCOUNT_NAMES.get(ctx.channel, ("account", "账号"))
    if ctx.member.role != FOLLOWER:
        raise Refusal(f"this {en} is already bound to {ctx.member.name}; send 解绑 (unbind) first to change it",
                      f"此{zh}已绑定 {ctx.member.name}，如需更换请先发送“解绑”")
    member = await bindings.bind(ctx.session, code, ctx.channel, ctx.user_id, ctx.config.server.timezone)
    await requeue_parked(ctx, member.userid)
    where = ctx.say(" Tasks and notices will come here.", "任务和通知将发送到这里。") \
        if member.push_channel == ctx.channel else ""
    return Text(ctx.say(
        f"Bound: this {en} is now {member.name}.{where} Send tasks to see your tasks, help for everything else.",
        f"绑定成功：此{zh}已绑定为 {member.name}。{where}发送“任务”查看任务，发送“帮助”查看全部命令。"))


async def binding_code(ctx: Context, userid: str | None) -> Text:
    if userid is None or userid == ctx.member.userid:
        if ctx.channel != bindings.HOME:
            raise Refusal("you are already using the WeChat official account", "您已经在使用微信公众号")
        member, for_someone_else = ctx.member, False
    else:
        if ctx.member.role != ADMIN:
            raise Refusal("only admins make binding codes for other people", "只有管理员可以为他人生成绑定码")
        found = await get_member(ctx.session, userid)
        if found is None:
            raise ArgError(f"there is no active member {userid}", f"没有在用的成员 {userid}")
        member, for_someone_else = found, True
    hours = ctx.config.wechat.binding_code_hours
    code = await bindings.issue_code(ctx.session, member, hours=hours, by=ctx.member, push_there=for_someone_else)
    until = code.expires_at.astimezone(ZoneInfo(ctx.config.server.timezone)).strftime("%Y-%m-%d %H:%M")
    whom_en = f" for {member.name}" if for_someone_else else ""
    whom_zh = f"（给 {member.name}）" if for_someone_else else ""
    push_en = " Their tasks and notices will then go to WeChat." if for_someone_else else ""
    push_zh = "绑定后其任务和通知将发到微信。" if for_someone_else else ""
    return Text(ctx.say(
        f"Binding code{whom_en}: {code.code} (one use, valid until {until}). Follow the brand's WeChat official "
        f"account and send: bind {code.code}.{push_en}",
        f"绑定码{whom_zh}：{code.code}（仅可使用一次，有效期至 {until}）。关注品牌微信公众号并发送：绑定 {code.code}。{push_zh}"))


async def refuse_if_only_on_wechat(ctx: Context) -> None:
    """Someone outside the brand's WeCom would cut themselves off: nothing would reach them."""
    if ctx.channel != bindings.HOME and not await bindings.uses_wecom(ctx.session, ctx.member.userid):
        raise Refusal("you have never used the bot in WeCom, so tasks and notices could not reach you there; "
                      "ask your admin if you want to change this",
                      "您从未在企业微信使用过本机器人，任务和通知将无法送达；如需变更请联系管理员")


async def unbind(ctx: Context, _args: None) -> Text:
    await refuse_if_only_on_wechat(ctx)
    await bindings.unbind(ctx.session, ctx.member, bindings.WECHAT if ctx.channel == bindings.HOME else ctx.channel)
    await requeue_parked(ctx, ctx.member.userid)
    return Text(ctx.say("Your WeChat is unbound. Tasks and notices go to WeCom again.",
                        "已解除微信绑定，任务和通知将改回企业微信发送。"))


CHANNEL_WORDS = {"wechat": bindings.WECHAT, "微信": bindings.WECHAT, "公众号": bindings.WECHAT,
                 "wecom": bindings.WECOM, "企业微信": bindings.WECOM}
# What a person's own account on a channel is called ("this WeChat is now Li Na").
ACCOUNT_NAMES = {bindings.WECHAT: ("WeChat", "微信")}
CHANNEL_NAMES = {bindings.WECHAT: ("the WeChat official account", "微信公众号"), bindings.WECOM: ("WeCom", "企业微信")}


def parse_channel(text: str) -> str | None:
    word = text.strip().lower()
    if word and word not in CHANNEL_WORDS:
        raise ArgError(f"“{word[:20]}” is not a channel: wechat or wecom", f"“{word[:20]}”不是渠道：微信 或 企业微信")
    return CHANNEL_WORDS.get(word) if word else None


async def notify(ctx: Context, channel: str | None) -> Text:
    if channel is not None:
        if channel == bindings.WECOM:
            await refuse_if_only_on_wechat(ctx)
        await bindings.set_push_channel(ctx.session, ctx.member, channel)
        await requeue_parked(ctx, ctx.member.userid)
    en, zh = CHANNEL_NAMES[ctx.member.push_channel]
    return Text(ctx.say(f"Your tasks and notices go to {en}. Change it: notify wechat / notify wecom",
                        f"您的任务和通知发送到{zh}。更改：通知 微信 / 通知 企业微信"))
