"""The lead pool in chat: pool, claim, return, leads, follow, won, lost (DESIGN §2, §5)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from handlers.replies import ButtonLabel, Reply, Text
from handlers import words
from handlers.context import ArgError, Context, parse_id
from store import pool
from store.leads import get_lead, mask_phone
from store.members import member_names
from store.partners import partner_names_by_id
from store.models import Lead, utcnow

# Replies list at most this many leads; the pool is browsed with filter words.
PAGE = 10


@dataclass(frozen=True)
class LeadText:
    lead_id: int
    text: str


def parse_lead_and_text(text: str) -> LeadText:
    """`12 some words` → (12, "some words"); the words may be empty (the handler decides)."""
    first, _, rest = text.strip().partition(" ")
    if not first:
        raise ArgError("give the lead number", "请给出线索编号")
    return LeadText(parse_id(first), rest.strip())


def parse_words(text: str) -> list[str]:
    return [w[:20] for w in text.split()[:5]]


def _line(lead: Lead | pool.Claimed, *, full_phone: bool) -> str:
    phone = lead.phone if full_phone else mask_phone(lead.phone)
    where = " · ".join(p for p in (lead.region, lead.industry) if p)
    return f"#{lead.id} {lead.name}（{lead.company or '—'}）{phone}" + (f" · {where}" if where else "")


async def show_pool(ctx: Context, words: list[str]) -> Text:
    leads = await pool.visible_pool(ctx.session, ctx.member, await ctx.pool_rules(), words, PAGE)
    if not leads:
        return Text(ctx.say("No leads to claim right now" + (" for those words." if words else "."),
                            "目前没有可领取的线索" + ("（按这些条件）。" if words else "。")))
    lines = [ctx.say("Leads you can claim:", "可领取的线索：")]
    lines += [f"• {_line(lead, full_phone=False)}" for lead in leads]
    lines.append(ctx.say(f"Claim one: claim {leads[0].id}", f"领取：领取 {leads[0].id}"))
    return Text("\n".join(lines))


async def claim_lead(ctx: Context, lead_id: int) -> list[Reply]:
    lead = await pool.claim(ctx.session, ctx.member, lead_id, await ctx.pool_rules())
    return [Text(ctx.say(
        f"Lead #{lead.id} is yours: {_line(lead, full_phone=True)}\nLog what happens: follow {lead.id} called, sends quote",
        f"线索 #{lead.id} 已归您：{_line(lead, full_phone=True)}\n记录跟进：跟进 {lead.id} 已电话沟通，发报价")),
        # Claimed for good: a card's claim button that was tapped is done (refusals leave it tappable).
        ButtonLabel(ctx.say("Claimed", "已领取"))]


async def return_lead(ctx: Context, args: LeadText) -> Text:
    _, given_up = await pool.give_back(ctx.session, ctx.member, args.lead_id, args.text,
                                       await ctx.pool_rules())
    if given_up is None:
        return Text(ctx.say(f"Lead #{args.lead_id} is back in the pool.", f"线索 #{args.lead_id} 已退回线索池。"))
    until = pool.local_time(given_up, ctx.config.server.timezone)
    return Text(ctx.say(f"Lead #{args.lead_id} is back in the pool. Returning it gave up its protection for you "
                        f"(until {until}): colleagues may claim it now.",
                        f"线索 #{args.lead_id} 已退回线索池。退回即放弃保护期（原保护至 {until}），同事现在可以领取。"))


async def my_leads(ctx: Context, _args: None) -> Text:
    leads = await pool.held_by(ctx.session, ctx.member)
    if not leads:
        return Text(ctx.say("You hold no open leads. Browse: pool", "您没有未结束的线索。浏览：线索池"))
    now = utcnow()
    lines = [ctx.say("Your leads:", "我的线索：")]
    for lead in leads[:30]:
        since = lead.last_follow_at or lead.claimed_at or lead.created_at
        days = (now - since).days
        lines.append(f"• {_line(lead, full_phone=True)} — " + ctx.say(f"{days} day(s) since last follow-up",
                                                                      f"{days} 天未跟进"))
    return Text("\n".join(lines))


async def follow_lead(ctx: Context, args: LeadText) -> Text:
    await pool.follow_up(ctx.session, ctx.member, args.lead_id, args.text)
    return Text(ctx.say(f"Noted on lead #{args.lead_id}.", f"已记录线索 #{args.lead_id} 的跟进。"))


@dataclass(frozen=True)
class WonArgs:
    lead_id: int
    amount: Decimal


def parse_won(text: str) -> WonArgs:
    args = parse_lead_and_text(text)
    if not args.text:
        raise ArgError("give the order amount", "请给出成交金额")
    try:
        return WonArgs(args.lead_id, pool.parse_amount(args.text))
    except pool.Refusal as refusal:
        raise ArgError(refusal.en, refusal.zh) from None


async def won_lead(ctx: Context, args: WonArgs) -> Text:
    await pool.win(ctx.session, ctx.member, args.lead_id, args.amount)
    return Text(ctx.say(f"🎉 Lead #{args.lead_id} won: {args.amount:,.2f}.", f"🎉 线索 #{args.lead_id} 成交：{args.amount:,.2f} 元。"))


async def lost_lead(ctx: Context, args: LeadText) -> Text:
    await pool.lose(ctx.session, ctx.member, args.lead_id, args.text)
    return Text(ctx.say(f"Lead #{args.lead_id} marked lost.", f"线索 #{args.lead_id} 已标记丢单。"))


async def lead_history(ctx: Context, lead_id: int) -> Text:
    lead = await get_lead(ctx.session, lead_id)
    if lead is None:
        return Text(ctx.say(f"There is no lead #{lead_id}.", f"没有线索 #{lead_id}。"))
    events = await pool.history(ctx.session, lead_id)
    people = await member_names(ctx.session, (e.member_id for e in events if e.member_id))
    partners = await partner_names_by_id(ctx.session, words.pool_partner_ids([e.note for e in events]))
    lines = [f"{_line(lead, full_phone=True)} — {words.word(words.LEAD_STATUSES, lead.status, ctx.lang)}"]
    for event in events:
        when = pool.local_time(event.at, ctx.config.server.timezone)
        name, partner = people.get(event.member_id or 0, ("", ""))
        who = words.person(name, partner, ctx.lang) if name else None
        note = words.event_note(event.kind, event.note, ctx.lang, partners) if event.note else ""
        lines.append(f"• {when} {words.event(event.kind, who, ctx.lang)}" + (ctx.say(": ", "：") + note if note else ""))
    return Text("\n".join(lines))


@dataclass(frozen=True)
class NurtureArgs:
    lead_id: int
    date_text: str
    note: str


def parse_nurture(text: str) -> NurtureArgs:
    args = parse_lead_and_text(text)
    date_text, _, note = args.text.partition(" ")
    if not date_text:
        raise ArgError("give the next-contact date, e.g. 2026-12-20", "请给出下次联系日期，例如 2026-12-20")
    return NurtureArgs(args.lead_id, date_text, note.strip())


async def nurture_lead(ctx: Context, args: NurtureArgs) -> Text:
    from datetime import time as clock
    from handlers.tasks import parse_deadline

    until = parse_deadline(args.date_text, ctx.config.server.timezone, ctx.now)
    assert until is not None
    until = until.replace(hour=9, minute=0) if until.time() == clock(23, 59) else until  # a date alone: 9:00
    await pool.nurture(ctx.session, ctx.member, args.lead_id, until, args.note)
    when = until.strftime("%Y-%m-%d %H:%M")
    return Text(ctx.say(f"Lead #{args.lead_id} is nurturing; I will remind you on {when}.",
                        f"线索 #{args.lead_id} 已转为孵化，{when} 提醒您联系。"))
