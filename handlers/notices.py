"""What the bot says on its own, not as an answer: notices the periodic jobs (bot/jobs.py) send.
Each is written here, beside the chat replies, so every text a person reads lives in handlers/.
Recipients did not write a command, so there is no language to answer in: Chinese first, then English.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from handlers import words
from handlers.replies import Text
from handlers.stats import deals_line, funnel_line, money
from store import stats
from store.leads import mask_phone
from store.models import Lead, LeadEvent, Task
from store.pool_rules import TIER_NAMES
from store.tiers import TIERS, Change


def new_lead(lead: Lead, task_id: int | None, channel: str, content_id: int | None = None) -> Text:
    """To the sharer whose link or poster (or copy of a content item) brought the lead in (bot/web/landing.py)."""
    via_en, via_zh = words.CHANNELS.get(channel, words.CHANNELS["other"])
    where_zh, where_en = (f"任务 #{task_id} 的{via_zh}", f"{via_en} for task #{task_id}") if content_id is None \
        else (f"素材 #{content_id} 的链接", f"link for content #{content_id}")
    return Text(f"🎉 新线索！{lead.name}（{lead.company or '未填公司'}，{mask_phone(lead.phone)}）"
                f"通过您在{where_zh}留下了信息，已归属于您。记录跟进：跟进 {lead.id} 内容\n"
                f"New lead from your {where_en}: {lead.name}. Log what happens: follow {lead.id} note")


def idle_warning(lead: Lead) -> Text:
    return Text(f"⚠️ 线索 #{lead.id}（{lead.name}）明天将因未跟进被收回。发送“跟进 {lead.id} 内容”保留它。\n"
                f"Lead #{lead.id} goes back to the pool tomorrow without a follow-up: follow {lead.id} note")


def recycled(lead: Lead, idle_days: int) -> Text:
    return Text(f"线索 #{lead.id}（{lead.name}）{idle_days} 天未跟进，已收回线索池。\n"
                f"Lead #{lead.id} had no follow-up for {idle_days} days and went back to the pool.")


def time_to_contact(lead: Lead, recent: Sequence[LeadEvent], tasks: Sequence[Task], zone: str) -> Text:
    """A nurturing lead's date has come: its contact (for its holder), recent history, and content to send."""
    lines = [f"⏰ 今天该联系线索 #{lead.id}：{lead.name}（{lead.company or '—'}）{lead.phone}",
             *[f"• {e.at.astimezone(ZoneInfo(zone)).strftime('%m-%d')} {words.event(e.kind, None, 'zh')}"
               + (f"：{words.event_note(e.kind, e.note, 'zh')}" if e.note else "") for e in recent]]
    if tasks:
        lines.append("可发送的内容：" + "；".join(f"#{t.id} {t.title}（链接 {t.id}）" for t in tasks))
    lines += [f"联系后记录：跟进 {lead.id} 内容", f"It is time to contact lead #{lead.id}; log it after: follow {lead.id} note"]
    return Text("\n".join(lines))


def daily_digest(day: date, funnel: stats.Funnel, partners: Sequence[stats.Standing]) -> Text:
    top = " · ".join(f"{i}. {p.name} {p.unique_clicks}" for i, p in enumerate(partners, 1) if p.unique_clicks)
    return Text("\n".join([f"📊 昨日简报 {day.isoformat()} / Daily digest", funnel_line(funnel, "zh"),
                           deals_line(funnel, "zh"), *([f"伙伴排行（独立点击）：{top}"] if top else []),
                           "详情：统计 昨天 · 归因 线性"]))


def tier_changed(change: Change, window_days: int) -> Text:
    """To the partner's members: their company's new tier and the figures behind it."""
    up, s = TIERS.index(change.new) > TIERS.index(change.old), change.standing
    return Text(f"{'🎉 ' if up else ''}{change.partner.name} 的伙伴等级已由{TIER_NAMES[change.old]}"
                f"{'升为' if up else '调整为'}{TIER_NAMES[change.new]}（近 {window_days} 天："
                f"独立点击 {s.unique_clicks}，线索 {s.leads}，成交额 {money(s.revenue)}）。\n"
                f"{change.partner.name} is now a {change.new} partner (was {change.old}).")


def tier_summary(month: str, changes: Sequence[Change]) -> Text:
    """To admins: every change of the month on one line."""
    return Text(f"本月伙伴等级调整（{month}）：" + "；".join(
        f"{c.partner.name} {TIER_NAMES[c.old]}→{TIER_NAMES[c.new]}" for c in changes))


def monthly_statement(month: str, earned: int, commission: Decimal) -> Text:
    return Text(f"📒 {month} 积分结算：{earned} 分，佣金 {money(commission)}。发送“积分”查看。\n"
                f"Your {month} statement: {earned} points, commission {money(commission)}.")


def new_flags(count: int) -> Text:
    return Text(f"🛡 风控：新增 {count} 条可疑记录，已暂不计入统计、等级和积分。发送“风控”查看。\n"
                f"{count} new flag(s) held back from the figures: send flags to review.")


def forward_failed() -> Text:
    """To a member whose `forward N` WeCom would not create after all (customers gone, an outage)."""
    return Text("企业微信未能创建刚才的客户群发：请手动转发您的专属版本（发送“素材 编号”获取），或稍后再试。\n"
                "WeCom could not create the customer mass message after all: forward your copy yourself "
                "(send content N for it), or try again later.")
