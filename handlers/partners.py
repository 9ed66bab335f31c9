"""Partner onboarding in chat: newpartner / 新伙伴, invite / 邀请, revoke / 撤销邀请 for admins, and
join / 加入 for anyone with a code (also people the bot does not know yet)."""
from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from handlers.replies import Poster, Reply, Text
from handlers.context import ArgError, Context
from handlers.tasks import card_rows
from store import onboarding
from store import quota as quota_store
from store import tasks as task_store
from store.models import Member
from store.partners import partner_by_name

DEFAULT_DAYS, DEFAULT_USES = 7, 50


@dataclass(frozen=True)
class NewPartner:
    name: str
    region: str
    industries: list[str]
    tier: str


def parse_newpartner(text: str) -> NewPartner:
    """`Name | region | industry;industry | tier` (all but the name optional)."""
    parts = [p.strip() for p in text.replace("｜", "|").split("|")]
    if not parts[0]:
        raise ArgError("give the partner's name: newpartner Name | region | industries | tier",
                       "请写伙伴名称：新伙伴 名称 | 区域 | 行业 | 等级")
    if len(parts) > 4:
        raise ArgError("at most four parts: name | region | industries | tier", "最多四项：名称 | 区域 | 行业 | 等级")
    parts += [""] * (4 - len(parts))
    tier = onboarding.TIER_WORDS.get(parts[3].lower() or "registered")
    if tier is None:
        raise ArgError(f"“{parts[3][:20]}” is not a tier: registered, silver or gold",
                       f"“{parts[3][:20]}”不是等级：注册、银牌 或 金牌")
    industries = [i.strip() for i in parts[2].replace("；", ";").replace("、", ";").split(";") if i.strip()]
    return NewPartner(parts[0], parts[1], industries, tier)


async def new_partner(ctx: Context, args: NewPartner) -> Text:
    partner = await onboarding.create_partner(ctx.session, args.name, args.region, args.industries, args.tier)
    return Text(ctx.say(
        f"Partner {partner.name} created ({partner.tier}). Invite its staff: invite {partner.name}",
        f"已创建伙伴 {partner.name}（{onboarding.TIER_NAMES[partner.tier]}）。邀请其员工：邀请 {partner.name}"))


@dataclass(frozen=True)
class InviteArgs:
    partner: str
    days: int
    uses: int


def parse_invite(text: str) -> InviteArgs:
    """`Partner name [days] [uses]`: trailing numbers are the days, then the number of places."""
    words = text.split()
    numbers: list[int] = []
    # isdecimal, not isdigit: "²" is a digit to Python but int() refuses it (it was an apology).
    while words and words[-1].isdecimal() and len(numbers) < 2:
        numbers.insert(0, int(words.pop()[:6]))
    if words and words[-1].isnumeric() and len(numbers) < 2:  # ², ½, 五: meant as a number, not a name
        raise ArgError(f"“{words[-1][:10]}” is not a number like 7: invite NAME [days 1–{onboarding.MAX_DAYS}] "
                       f"[places 1–{onboarding.MAX_USES}]",
                       f"“{words[-1][:10]}”不是数字（例如 7）：邀请 名称 [天数 1–{onboarding.MAX_DAYS}] "
                       f"[名额 1–{onboarding.MAX_USES}]")
    name = " ".join(words).strip("\"'“”")
    if not name:
        raise ArgError("give the partner's name: invite NAME [days] [uses]", "请写伙伴名称：邀请 名称 [天数] [次数]")
    days = numbers[0] if numbers else DEFAULT_DAYS
    uses = numbers[1] if len(numbers) > 1 else DEFAULT_USES
    return InviteArgs(name, days, uses)


def join_url(ctx: Context, code: str) -> str:
    return f"{ctx.config.server.public_base_url.rstrip('/')}/join/{code}"


async def invite(ctx: Context, args: InviteArgs) -> list[Reply]:
    partner = await partner_by_name(ctx.session, args.partner)
    if partner is None:
        raise ArgError(f"there is no partner called {args.partner[:30]}", f"没有名为 {args.partner[:30]} 的伙伴")
    code = await onboarding.create_invite(ctx.session, partner, days=args.days, uses=args.uses, created_by=ctx.member)
    until = code.expires_at.astimezone(ZoneInfo(ctx.config.server.timezone)).strftime("%Y-%m-%d %H:%M")
    text = Text(ctx.say(
        f"Invite code for {partner.name}: {code.code} — {code.max_uses} place(s), valid until {until}.\n"
        f"Staff send: join {code.code} (or scan the poster). Revoke: revoke {code.code}",
        f"{partner.name} 的邀请码：{code.code}，共 {code.max_uses} 个名额，有效期至 {until}。\n"
        f"员工发送：加入 {code.code}（或扫描海报）。撤销：撤销邀请 {code.code}"))
    poster = Poster(template="classic", qr_url=join_url(ctx, code.code), member_name=f"邀请码 {code.code}",
                    partner_name=partner.name, task_title=f"扫码加入 {partner.name} 伙伴计划")
    return [text, poster]


async def revoke(ctx: Context, code: str) -> Text:
    revoked = await onboarding.revoke(ctx.session, code)
    return Text(ctx.say(f"Invite code {revoked.code} is revoked ({revoked.uses} of {revoked.max_uses} place(s) were used).",
                        f"邀请码 {revoked.code} 已撤销（已使用 {revoked.uses}/{revoked.max_uses} 个名额）。"))


def parse_code(text: str) -> str:
    code = onboarding.normalize_code(text)
    if not code:
        raise ArgError("give the invite code: join CODE", "请写邀请码：加入 邀请码")
    return code


async def join(ctx: Context, code: str) -> Text:
    member, partner = await onboarding.join(ctx.session, code, ctx.member.userid, ctx.member.name,
                                            ctx.config.server.timezone)
    deferred = await queue_onboarding_cards(ctx, member)
    later = ctx.say(f"\n{deferred} task card(s) will follow when WeCom's daily message quota has room; "
                    f"tasks shows them now.", f"\n另有 {deferred} 张任务卡片将在企业微信每日发送额度有余量时送达，"
                    f"发送“任务”可先查看。") if deferred else ""
    return Text(ctx.say(
        f"Welcome to {partner.name}'s partner programme! Send tasks to see your co-marketing tasks, help for everything else.",
        f"欢迎加入 {partner.name} 伙伴计划！发送“任务”查看联合推广任务，发送“帮助”查看全部命令。") + later)


async def queue_onboarding_cards(ctx: Context, member: Member) -> int:
    """Tasks already broadcast to people like them (all, their partner, region) come as cards now,
    as far as today's WeCom send quota goes, earliest deadline first; the rest are deferred (sent
    when the quota has room, bot/jobs.py). How many were deferred."""
    tasks = await task_store.open_tasks_targeting(ctx.session, member)
    if not tasks:
        return 0
    quota = await quota_store.hold_quota(ctx.session, now=ctx.now, rules=ctx.config.wecom)
    room, deferred = quota.left, 0
    for task in sorted(tasks, key=lambda t: (t.deadline is None, t.deadline or ctx.now, t.id)):
        purpose, rows = await card_rows(ctx.session, task, [member], ctx.commands, ctx.config.server.timezone,
                                        reminder=False, automatic=False, now=ctx.now)
        queued, later = await quota_store.queue_within(ctx.session, room, task_id=task.id, purpose=purpose, rows=rows)
        room, deferred = room - queued, deferred + later
    return deferred
