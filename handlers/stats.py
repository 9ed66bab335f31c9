"""me / 我的, report / 统计 and roi / 归因: figures in chat (DESIGN §2, §4).

Partners see only their own company's figures; marketers and admins see everyone's.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from handlers.replies import Chart, Reply, Text
from handlers.content import forwarded_line
from handlers.context import ROLE_NAMES, ArgError, Context, parse_id
from store import attribution, forwards, points, stats
from store.content import STAFF_ROLES, get_content
from store.errors import Refusal
from store import tasks as task_store
from store.members import member_by_userid
from store.partners import partner_by_id, partner_by_name
from store.report_figures import report_figures
from store.stats import BadPeriod, Period, Scope

STEP_NAMES = {"reached": ("reached", "触达"), "sharers": ("shared", "分享"), "unique_clicks": ("unique clicks", "独立点击"),
              "leads": ("leads", "线索"), "taken": ("taken on", "已跟进"), "won": ("won", "成交")}
TREND_NAMES = {"shares": ("shares", "分享"), "unique_clicks": ("unique clicks", "独立点击"), "leads": ("leads", "线索")}
PEOPLE_STEPS = ("reached", "sharers")  # counted in people: "人"
MULTIPLIER_NOTES = {"unique_clicks": ("{n} per sharer", "每位分享者带来 {n} 次"),
                    "leads": ("{n} per 100 unique clicks", "每百次独立点击 {n} 条")}
TASK_WORDS, PARTNER_WORDS, MEMBER_WORDS = ("task", "任务"), ("partner", "伙伴"), ("member", "成员")
CONTENT_WORDS = ("content", "素材")


def money(amount: Decimal) -> str:
    return f"¥{amount:,.0f}" if amount == amount.to_integral_value() else f"¥{amount:,.2f}"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}" if rate >= 0.1 else f"{rate:.1%}"


def step_note(funnel: stats.Funnel, step: str, lang: str) -> str:
    """How a step compares with the one before: a percentage where it is a subset of it, else a
    labelled multiplier (visitors per sharer), so no figure reads as more than 100 %."""
    rate = funnel.rate(step)
    if step in MULTIPLIER_NOTES:
        template = MULTIPLIER_NOTES[step][1 if lang == "zh" else 0]
        return "—" if rate is None else template.format(n=f"{rate:.1f}".removesuffix(".0"))
    return percent(rate)


def funnel_steps(funnel: stats.Funnel, lang: str) -> list[list[object]]:
    """[name, value, note] per step, for the text and the chart alike."""
    index = 1 if lang == "zh" else 0
    return [[STEP_NAMES[step][index], getattr(funnel, step), step_note(funnel, step, lang) if i else ""]
            for i, step in enumerate(stats.Funnel.STEPS)]


def funnel_line(funnel: stats.Funnel, lang: str) -> str:
    """触达 12 人 → 分享 8 人 (67%) → 独立点击 40（每位分享者带来 5 次）→ …"""
    people = " 人" if lang == "zh" else ""
    open_, close = ("（", "）") if lang == "zh" else (" (", ")")
    return " → ".join(f"{name} {value}" + (people if step in PEOPLE_STEPS else "") + (f"{open_}{note}{close}" if note else "")
                      for step, (name, value, note) in zip(stats.Funnel.STEPS, funnel_steps(funnel, lang)))


def deals_line(funnel: stats.Funnel, lang: str) -> str:
    """The period's wins (as roi and points count them) and the clicks behind the visitors."""
    if lang == "zh":
        return (f"本期成交 {funnel.deals} 单，成交额 {money(funnel.revenue)}（按成交时间，含线索池与分配的线索）"
                f" · 分享 {funnel.shares} 次 · 点击 {funnel.clicks}（机器访问 {funnel.bot_clicks} 未计入）")
    return (f"Won in the period: {funnel.deals} deal(s), {money(funnel.revenue)} (by date won, pool and assigned leads "
            f"included) · {funnel.shares} share(s) · clicks {funnel.clicks} (bots {funnel.bot_clicks} not counted)")


def flags_hint(ctx: Context) -> str:
    """Where held-back figures are reviewed, for those who may review them (admins)."""
    return ctx.say(" (flags)", "（风控）") if ctx.may_use("flags") else ""


def today(ctx: Context):  # type: ignore[no-untyped-def]
    return ctx.now.astimezone(ZoneInfo(ctx.config.server.timezone)).date()


def period_of(ctx: Context, word: str | None, default: str) -> Period:
    try:
        return stats.parse_period(word or default, ctx.config.server.timezone, today(ctx))
    except BadPeriod as bad:
        raise ArgError(bad.en, bad.zh) from None


async def my_figures(ctx: Context, _args: None) -> Text:
    """The last 30 days, by the same definitions as report and points; my rank by unique clicks."""
    period = period_of(ctx, "30d", "30d")
    standings = await stats.member_standings(ctx.session, period)
    mine = standings.get(ctx.member.id) or stats.Standing(ctx.member.id, ctx.member.name)
    claimed = await stats.claims(ctx.session, ctx.member.id, period)
    everyone = stats.active(standings)
    rank_line = ""
    if any(s.key == ctx.member.id for s in everyone):  # an inactive member is not ranked
        colleagues = [s for s in everyone if s.partner_id == ctx.member.partner_id]
        overall = stats.rank_of(everyone, ctx.member.id, "unique_clicks")
        inside = stats.rank_of(colleagues, ctx.member.id, "unique_clicks") if ctx.member.partner_id else None
        rank_line = "\n" + ctx.say(
            f"Rank by unique clicks: #{overall} of {len(everyone)}"
            + (f", #{inside} of {len(colleagues)} in your company." if inside else "."),
            f"独立点击排名：第 {overall}/{len(everyone)} 名" + (f"，公司内第 {inside}/{len(colleagues)} 名。" if inside else "。"))
    forwarded = forwarded_line(ctx, await forwards.forward_figures(ctx.session, member_id=ctx.member.id,
                                                                   since=period.start))
    if forwarded:
        rank_line += "\n" + forwarded
    return Text(ctx.say(
        f"Your last 30 days: {mine.shares} share(s), {mine.unique_clicks} unique click(s) (bots excluded), "
        f"{mine.leads} lead(s) from your links, {claimed} claimed from the pool, {mine.won} won ({money(mine.revenue)}; "
        "every lead you hold counts, whatever its source).",
        f"您近 30 天：分享 {mine.shares} 次，独立点击 {mine.unique_clicks} 次（不含机器访问），通过您的链接带来线索 {mine.leads} 条，"
        f"从线索池领取 {claimed} 条，成交 {mine.won} 单（{money(mine.revenue)}，含您持有的所有线索）。") + rank_line)


@dataclass(frozen=True)
class ReportArgs:
    period: str | None = None
    task_id: int | None = None
    partner: str | None = None
    member: str | None = None
    content_id: int | None = None


def parse_report(text: str) -> ReportArgs:
    """`month`, `task 12`, `content 5`, `member zhangwei`, `partner Blue Ocean week`, `统计 任务 3 本周`,
    `统计 素材 5`, `2026-11-01..2026-11-15`."""
    words, period, task_id, partner, member, content_id = text.split(), None, None, None, None, None
    i = 0
    while i < len(words):
        word = words[i]
        head, _, tail = word.partition(":")
        if stats.is_period_word(word):
            period = word
        elif word.lower() in TASK_WORDS or (tail and head.lower() in TASK_WORDS):
            if not tail:
                i += 1
            task_id = parse_id(tail or (words[i] if i < len(words) else ""))
        elif word.lower() in CONTENT_WORDS or (tail and head.lower() in CONTENT_WORDS):
            if not tail:
                i += 1
            content_id = parse_id(tail or (words[i] if i < len(words) else ""))
        elif word.lower() in MEMBER_WORDS or (tail and head.lower() in MEMBER_WORDS):
            if not tail:
                i += 1
            member = (tail or (words[i] if i < len(words) else ""))[:64]
            if not member:
                raise ArgError("give the member's user id: report member USERID", "请写成员的账号：统计 成员 账号")
        elif word.lower() in PARTNER_WORDS or (tail and head.lower() in PARTNER_WORDS):
            rest = ([tail] if tail else []) + [w for w in words[i + 1:] if not stats.is_period_word(w)]
            period = next((w for w in words[i + 1:] if stats.is_period_word(w)), period)
            partner = " ".join(rest).strip("\"'“”")
            if not partner:
                raise ArgError("give the partner's name: report partner NAME", "请写伙伴名称：统计 伙伴 名称")
            break
        else:
            raise ArgError(f"“{word[:20]}” is not a period, task N, content N or partner NAME",
                           f"“{word[:20]}”不是时间段、任务 N、素材 N 或 伙伴 名称")
        i += 1
    return ReportArgs(period, task_id, partner, member, content_id)


async def _scope(ctx: Context, args: ReportArgs) -> tuple[Scope, str]:
    """The scope asked for, within what this person may see, and a label for it."""
    partner_id, labels = None, []
    if args.partner is not None:
        partner = await partner_by_name(ctx.session, args.partner)
        if partner is None:
            raise ArgError(f"there is no partner called {args.partner[:30]}", f"没有名为 {args.partner[:30]} 的伙伴")
        partner_id = partner.id
    if ctx.member.role == "partner":
        if partner_id not in (None, ctx.member.partner_id) or ctx.member.partner_id is None:
            raise ArgError("you can see your own company's figures only", "您只能查看本公司的数据")
        partner_id = ctx.member.partner_id
    member_id = None
    if args.member is not None:
        member = await member_by_userid(ctx.session, args.member)
        # Partner staff may look at colleagues, not at other companies' people.
        if member is None or (ctx.member.role == "partner" and member.partner_id != ctx.member.partner_id):
            raise ArgError(f"there is no member {args.member} you may see", f"没有您可查看的成员 {args.member}")
        member_id = member.id
        labels.append(member.name)
    if partner_id is not None:
        labelled = await partner_by_id(ctx.session, partner_id)
        labels.append(labelled.name if labelled is not None else "")
    if args.task_id is not None:
        task = await task_store.get_task(ctx.session, args.task_id)
        # Partner staff see tasks their company got, as `task N` does; no title of another's task leaks.
        if task is None or (ctx.member.role == "partner" and not await task_store.reached_partner(
                ctx.session, task.id, ctx.member.partner_id)):
            raise ArgError(f"there is no task #{args.task_id} for you", f"没有属于您的任务 #{args.task_id}")
        labels.append(f"#{task.id} {task.title}")
    if args.content_id is not None:
        if ctx.member.role not in STAFF_ROLES:
            who_en = " and ".join(ROLE_NAMES[r][0] for r in STAFF_ROLES)
            who_zh = "和".join(ROLE_NAMES[r][1] for r in STAFF_ROLES)
            raise Refusal(f"one content item's figures (report content N) are for {who_en} only",
                          f"单个素材的数据（统计 素材 N）仅限{who_zh}查看")
        item = await get_content(ctx.session, args.content_id)
        if item is None:
            raise ArgError(f"there is no content #{args.content_id}; send content to see the library",
                           f"没有素材 #{args.content_id}；发送“素材”查看素材库")
        labels.append(ctx.say(f"content #{item.id} {item.title}", f"素材 #{item.id} {item.title}"))
    return Scope(task_id=args.task_id, partner_id=partner_id, member_id=member_id,
                 content_id=args.content_id), " · ".join(labels)


async def report(ctx: Context, args: ReportArgs) -> list[Reply]:
    period = period_of(ctx, args.period, "month")
    scope, label = await _scope(ctx, args)
    fortnight = period_of(ctx, f"{today(ctx) - timedelta(days=13)}..{today(ctx)}", "")  # the chart's trend
    figures = await report_figures(ctx.session, scope, period, fortnight)  # at once, where the database allows
    funnel, members, series = figures.funnel, figures.members, figures.trend
    # One company's report ranks its people; the whole programme's ranks companies and people.
    partners = figures.partners
    top_partners = stats.ranked(partners, "unique_clicks")[:10]
    top_members = stats.ranked(stats.active(members), "unique_clicks")[:10]
    title = ctx.say(f"📊 Report · {period.label}", f"📊 统计 · {period.label}") + (f" · {label}" if label else "")
    lines = [title, funnel_line(funnel, ctx.lang), deals_line(funnel, ctx.lang)]
    if scope.content_id is not None and (reached := (await forwards.forward_figures(
            ctx.session, content_id=scope.content_id, since=period.start, until=period.end)).reached):
        lines.append(ctx.say(f"Customers reached by WeCom mass messages: {reached}", f"客户群发送达客户：{reached} 位"))
    if funnel.held_clicks or funnel.held_leads:
        lines.append(ctx.say(f"Held back by fraud checks: {funnel.held_clicks} click(s), {funnel.held_leads} lead(s)",
                             f"风控暂扣：点击 {funnel.held_clicks} 次，线索 {funnel.held_leads} 条") + flags_hint(ctx))
    for name_en, name_zh, board in (("Partners", "伙伴排行", top_partners), ("Members", "成员排行", top_members)):
        if board and board[0].unique_clicks + board[0].shares + board[0].leads:
            shown = " · ".join(f"{i}. {s.name} {s.unique_clicks}" for i, s in enumerate(board[:5], 1))
            lines.append(ctx.say(f"{name_en} by unique clicks: {shown}", f"{name_zh}（独立点击）：{shown}"))
    lines += top_content(ctx, figures.content)
    if ctx.may_use("roi"):
        lines.append(ctx.say("Revenue by attribution model: roi linear", "归因分析：归因 线性"))
    board = top_partners or top_members
    spec = {
        "title": title.removeprefix("📊 "),
        "funnel": funnel_steps(funnel, ctx.lang),
        "trend": {"days": [(today(ctx) - timedelta(days=13 - i)).strftime("%m-%d") for i in range(14)],
                  "series": {ctx.say(*TREND_NAMES[k]): v for k, v in series.items()}},
        "leaderboard": {"title": ctx.say("Partners" if top_partners else "Members", "伙伴排行" if top_partners else "成员排行")
                                 + ctx.say(" · unique clicks", " · 独立点击"),
                        "rows": [[s.name, s.unique_clicks] for s in board]},
        "labels": {"funnel": ctx.say("Funnel", "转化漏斗"), "trend": ctx.say("Last 14 days", "近 14 天趋势"),
                   "no_data": ctx.say("No data", "暂无数据")},
    }
    return [Text("\n".join(lines)), Chart(spec)]


def top_content(ctx: Context, standings: list[stats.ContentStanding]) -> list[str]:
    """The five content items that did best in the period (nothing when none was copied, clicked or
    brought a lead), with the command for one item's funnel for those who may send it."""
    board = standings[:5]
    if not board:
        return []
    shown = " · ".join(ctx.say(f"{i}. #{s.key} {s.title} {s.unique_clicks} (copies {s.shares}, leads {s.leads})",
                               f"{i}. #{s.key} {s.title} {s.unique_clicks}（复制 {s.shares}，线索 {s.leads}）")
                       for i, s in enumerate(board, 1))
    more = ctx.say(" · one item: report content N", " · 单个素材：统计 素材 N") if ctx.member.role in STAFF_ROLES else ""
    return [ctx.say(f"Content by unique clicks: {shown}", f"素材排行（独立点击）：{shown}") + more]


@dataclass(frozen=True)
class RoiArgs:
    model: str = "linear"
    period: str | None = None


def parse_roi(text: str) -> RoiArgs:
    model, period = "linear", None
    for word in text.split():
        if word.lower() in attribution.MODEL_WORDS:
            model = attribution.MODEL_WORDS[word.lower()]
        elif stats.is_period_word(word):
            period = word
        else:
            raise ArgError(f"“{word[:20]}” is not a model (first, last, linear, u) or a period",
                           f"“{word[:20]}”不是归因模型（首次、末次、线性、U型）或时间段")
    return RoiArgs(model, period)


async def roi(ctx: Context, args: RoiArgs) -> Text:
    period = period_of(ctx, args.period, "month")
    result = await attribution.attribute(ctx.session, period, args.model)
    name = ctx.say(*attribution.MODEL_NAMES[args.model])
    lines = [ctx.say(f"💰 Attribution · {name} · {period.label}: {result.won_leads} won, {money(result.revenue)}"
                     f" (no tracked touch: {money(result.unattributed)})",
                     f"💰 归因 · {name} · {period.label}：成交 {result.won_leads} 单，{money(result.revenue)}"
                     f"（无追踪触点：{money(result.unattributed)}）")]
    if result.held_revenue:
        lines.append(ctx.say(f"Held back by fraud checks: {money(result.held_revenue)}",
                             f"风控暂扣成交额：{money(result.held_revenue)}") + flags_hint(ctx))
    tasks = sorted(result.by_task.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    if tasks:
        lines.append(ctx.say("By task:", "按任务："))
        for task_id, amount in tasks:
            cost, rate = result.task_costs.get(task_id), result.roi(task_id)
            extra = ctx.say(f" (cost {money(cost)}, ROI {rate:+.0%})", f"（成本 {money(cost)}，ROI {rate:+.0%}）") \
                if cost and rate is not None else ""
            lines.append(f"• #{task_id} {result.task_names.get(task_id, '')} {money(amount)}{extra}")
    partners = sorted(((p, a) for p, a in result.by_partner.items() if a), key=lambda kv: (-kv[1], kv[0] or 0))[:8]
    if partners:
        lines.append(ctx.say("By partner:", "按伙伴："))
        nobody = ctx.say("(no partner)", "（无伙伴）")
        lines += [f"• {result.partner_names.get(p, nobody) if p else nobody} {money(amount)}" for p, amount in partners]
    items = sorted(((c, a) for c, a in result.by_content.items() if a), key=lambda kv: (-kv[1], kv[0]))[:5]
    if items:
        lines.append(ctx.say("By content:", "按素材："))
        lines += [f"• #{c} {result.content_names.get(c, '')} {money(amount)}" for c, amount in items]
    other = [m for m in attribution.MODELS if m != args.model]
    lines.append(ctx.say("Other models: " + ", ".join(f"roi {m}" for m in other),
                         "其他模型：" + "、".join(f"归因 {attribution.MODEL_COMMAND_ZH[m]}" for m in other)))
    return Text("\n".join(lines))


async def my_points(ctx: Context, _args: None) -> Text:
    """This month's points and commission from the ledger (settled daily), and the all-time total."""
    month = points.month_start(today(ctx), ctx.config.server.timezone)
    this_month = await points.balance(ctx.session, ctx.member.id, since=month)
    total = await points.balance(ctx.session, ctx.member.id)
    return Text(ctx.say(
        f"Your points this month: {this_month.points} (commission {money(this_month.commission)}); "
        f"all time: {total.points} (commission {money(total.commission)}).\n"
        "Points settle daily: shares and leads within minutes, a day's clicks the next day.",
        f"您本月积分：{this_month.points}（佣金 {money(this_month.commission)}）；累计：{total.points}"
        f"（佣金 {money(total.commission)}）。\n积分每日结算：分享和线索数分钟内入账，当天点击次日入账。"))
