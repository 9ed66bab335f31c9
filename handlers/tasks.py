"""Co-marketing tasks: newtask, task N, tasks, broadcast, remind (DESIGN §2, §3 Broadcast)."""
from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from handlers import words
from handlers.replies import Button, Card, Text, reply_to_payload
from handlers.context import MARKETER, ADMIN, ArgError, CommandTable, Context, parse_id, shorten
from handlers.quota import over_quota, quota_use
from store import content as content_store
from store import quota as quota_store
from store import tasks as task_store
from store.models import ContentItem, Member, Task

STAFF = frozenset({MARKETER, ADMIN})
CONFIRM_WORDS = ("confirm", "确认")
# A preview quotes the confirm command back only while it is short enough to copy; a reply must fit
# one WeCom text (2,048 bytes), and a command with thousands of targets does not.
CONFIRM_QUOTE_MAX = 300
_PIPE = re.compile(r"[|｜]")


# ----- argument parsers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class NewTaskArgs:
    title: str
    url: str
    template: str
    deadline_text: str


def parse_newtask(text: str) -> NewTaskArgs:
    parts = [p.strip() for p in _PIPE.split(text)]
    if len(parts) < 2 or len(parts) > 4:
        raise ArgError("give a title and a link separated by |", "请用 | 分隔标题和链接")
    template = parts[2] if len(parts) > 2 and parts[2] else "classic"
    return NewTaskArgs(parts[0], parts[1], template, parts[3] if len(parts) > 3 else "")


@dataclass(frozen=True)
class BroadcastArgs:
    task_id: int
    targets: list[str]
    confirmed: bool


def parse_broadcast(text: str) -> BroadcastArgs:
    # Names with spaces are quoted: partner:"Blue Ocean" (Chinese quotes work too).
    try:
        words = shlex.split(text.replace("“", '"').replace("”", '"'))
    except ValueError:
        raise ArgError("a quote is not closed", "引号没有闭合") from None
    if not words:
        raise ArgError("give the task number and a target", "请给出任务编号和下发目标")
    confirmed = bool(words) and words[-1].lower() in CONFIRM_WORDS
    targets = words[1:-1] if confirmed else words[1:]
    if not targets:
        raise ArgError("say who gets it: all, partner:NAME, region:NAME, tag:NAME or user:ID",
                       "请给出下发目标：全部、伙伴:名称、区域:名称、标签:名称 或 用户:ID")
    return BroadcastArgs(parse_id(words[0]), targets, confirmed)


def _quoted(target: str) -> str:
    kind, sep, value = target.partition(":")
    return f'{kind}:"{value}"' if sep and re.search(r"\s", value) else target


def parse_deadline(text: str, zone: str, now: datetime) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    tz = ZoneInfo(zone)
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%m-%d", "%m/%d"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt in ("%m-%d", "%m/%d"):
            parsed = parsed.replace(year=now.astimezone(tz).year)
        if "%H" not in fmt:
            parsed = datetime.combine(parsed.date(), time(23, 59))
        return parsed.replace(tzinfo=tz)
    raise ArgError(f"“{shorten(text)}” is not a date like 2026-12-31 or 2026-12-31 18:00",
                   f"“{shorten(text)}”不是日期，例如 2026-12-31 或 2026-12-31 18:00")


def format_time(value: datetime | None, zone: str, lang: str) -> str:
    if value is None:
        return "no deadline" if lang == "en" else "无截止时间"
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


# ----- cards ---------------------------------------------------------------------------------------
# WeCom shows at most 6 buttons on a card: three for the task, up to three for attached content.
CONTENT_BUTTONS = 3


def task_buttons(task_id: int, commands: CommandTable, content_ids: tuple[int, ...] = ()) -> tuple[Button, ...]:
    """Buttons run commands as if typed; only commands that exist get a button."""
    wanted = (("poster", "我的海报"), ("link", "我的链接"), ("task", "任务详情"))
    buttons = [Button(label, f"{cmd.name_zh} {task_id}")
               for name, label in wanted if (cmd := commands.lookup(name)) is not None]
    if (content := commands.lookup("content")) is not None:
        buttons += [Button(f"素材 #{cid}", f"{content.name_zh} {cid}") for cid in content_ids[:CONTENT_BUTTONS]]
    return tuple(buttons)


def attached_lines(ctx: Context, items: list[ContentItem]) -> list[str]:
    """The content a task offers, as `task N` shows it, each with the command that gives a copy."""
    command = ctx.commands.lookup("content")
    if not items or command is None:
        return []
    take = command.name if ctx.lang == "en" else command.name_zh
    kinds = words.CONTENT_KINDS
    return [ctx.say("Content for this task:", "本任务的素材：")] + \
        [f"• #{i.id} [{words.word(kinds, i.kind, ctx.lang)}] {shorten(i.title, 40)} — {take} {i.id}" for i in items]


def task_card(task: Task, commands: CommandTable, zone: str, *, reminder: bool, card_id: str,
              content_ids: tuple[int, ...] = ()) -> dict[str, Any]:
    deadline = f"截止 {format_time(task.deadline, zone, 'zh')}" if task.deadline else "长期有效"
    menu_description = ""  # the same text fits WeChat's message menu
    if reminder:
        title, description = f"⏰ 提醒：{task.title}", f"{deadline}，您还没有分享"
    else:
        title, description = f"新任务 #{task.id}：{task.title}", f"{deadline}，点下方按钮获取您的专属物料"
        # WeChat shows the buttons as the commands they run ("海报 2"), which can also be typed.
        menu_description = f"{deadline}，点下方指令（或直接发送）获取您的专属物料"
    card = Card(title=title, description=description, buttons=task_buttons(task.id, commands, content_ids),
                card_id=card_id, menu_description=menu_description)
    return reply_to_payload(card) | {"duplicate_check": True}


def _task_line(task: Task, ctx: Context) -> str:
    return f"#{task.id} {task.title} — {format_time(task.deadline, ctx.config.server.timezone, ctx.lang)}"


# ----- handlers ------------------------------------------------------------------------------------
async def new_task(ctx: Context, args: NewTaskArgs) -> Text:
    try:
        deadline = parse_deadline(args.deadline_text, ctx.config.server.timezone, ctx.now)
        task = await task_store.create_task(ctx.session, title=args.title, url=args.url, template=args.template,
                                            deadline=deadline, creator=ctx.member,
                                            templates_dir=ctx.config.posters.templates_dir)
    except task_store.InvalidTask as problem:
        return Text(ctx.say(f"Task not created: {problem.en}.", f"未创建任务：{problem.zh}。"))
    return Text(ctx.say(
        f"Task #{task.id} created: {task.title}\nNext: broadcast {task.id} all (or partner:NAME, region:NAME, "
        f"tag:NAME, user:ID)",
        f"已创建任务 #{task.id}：{task.title}\n下一步：下发 {task.id} 全部（或 伙伴:名称、区域:名称、标签:名称、用户:ID）"))


async def visible_task(ctx: Context, task_id: int) -> Task | None:
    """Staff see every task; partner staff only tasks sent to them (others' tasks stay private)."""
    task = await task_store.get_task(ctx.session, task_id)
    if task is None:
        return None
    if ctx.member.role == "partner" and not await task_store.was_delivered_to(ctx.session, task_id, ctx.member):
        return None
    return task


def no_task(ctx: Context, task_id: int | None) -> Text:
    if task_id is None:
        return Text(ctx.say("You have no open task right now. Send tasks to see yours.",
                            "您目前没有进行中的任务。发送“任务”查看您的任务。"))
    return Text(ctx.say(f"There is no task #{task_id} for you. Send tasks to see yours.",
                        f"没有属于您的任务 #{task_id}。发送“任务”查看您的任务。"))


async def given_or_newest_task(ctx: Context, task_id: int | None) -> Task | None:
    """The task asked for, or without a number (a menu button) the newest open task sent to them."""
    if task_id is not None:
        return await visible_task(ctx, task_id)
    newest = await task_store.tasks_for_member(ctx.session, ctx.member)
    return newest[0][0] if newest else None


async def show_task(ctx: Context, task_id: int) -> Text:
    task = await visible_task(ctx, task_id)
    if task is None:
        return no_task(ctx, task_id)
    zone = ctx.config.server.timezone
    lines = [f"#{task.id} {task.title}",
             ctx.say(f"Deadline: {format_time(task.deadline, zone, 'en')}", f"截止：{format_time(task.deadline, zone, 'zh')}")]
    if task.description:
        lines.append(task.description)
    if ctx.member.role == "partner":
        shared = await task_store.has_shared(ctx.session, task.id, ctx.member)
        lines.append(ctx.say("You have shared it." if shared else "You have not shared it yet.",
                             "您已分享。" if shared else "您还没有分享。"))
        if task.status == "ended":
            lines.append(ctx.say("This task has ended.", "该任务已结束。"))
        actions = [f"{c.name if ctx.lang == 'en' else c.name_zh} {task.id}"
                   for c in (ctx.commands.lookup("poster"), ctx.commands.lookup("link")) if c is not None]
        if actions and task.status != "ended":
            lines.append(ctx.say("Next: ", "下一步：") + ctx.say(", ", "、").join(actions))
            lines += attached_lines(ctx, await content_store.attached_to(ctx.session, task.id, ctx.now))
        return Text("\n".join(lines))
    progress = await task_store.delivery_progress(ctx.session, task.id)
    shared = await task_store.share_count(ctx.session, task.id)
    lines.append(ctx.say(f"Link: {task.target_url}", f"链接：{task.target_url}"))
    waiting_en = f" {progress['waiting']} wait for WeChat followers to write." if progress["waiting"] else ""
    waiting_zh = f"{progress['waiting']} 张等待微信关注者发消息后送达。" if progress["waiting"] else ""
    if deferred := progress.get(quota_store.DEFERRED, 0):  # cards of people who joined on a day the quota ran out
        waiting_en += f" {deferred} wait for room in WeCom's daily send quota."
        waiting_zh += f"{deferred} 张等待企业微信每日发送额度有余量时发出。"
    status = words.word(words.TASK_STATUSES, task.status, ctx.lang)
    lines.append(ctx.say(
        f"Status: {status}. Cards: {progress['pending'] + progress['sending']} queued, {progress['sent']} sent, "
        f"{progress['failed']} failed.{waiting_en} {shared} member(s) have shared.",
        f"状态：{status}。卡片：排队 {progress['pending'] + progress['sending']}，已发送 {progress['sent']}，"
        f"失败 {progress['failed']}。{waiting_zh}已分享 {shared} 人。"))
    lines += attached_lines(ctx, await content_store.attached_to(ctx.session, task.id, ctx.now, live_only=False))
    return Text("\n".join(lines))


async def tasks_or_task(ctx: Context, task_id: int | None) -> Text:
    return await list_tasks(ctx) if task_id is None else await show_task(ctx, task_id)


async def list_tasks(ctx: Context) -> Text:
    if ctx.member.role == "partner":
        mine = await task_store.tasks_for_member(ctx.session, ctx.member)
        if not mine:
            return Text(ctx.say("You have no open tasks right now.", "您目前没有进行中的任务。"))
        lines = [ctx.say("Your open tasks:", "您的任务：")]
        for task, shared in mine[:20]:
            mark = ctx.say("shared" if shared else "not shared yet", "已分享" if shared else "未分享")
            lines.append(f"• {_task_line(task, ctx)} — {mark}")
        lines.append(ctx.say("Details: task N", "详情：任务 N"))
        return Text("\n".join(lines))
    recent = await task_store.recent_tasks(ctx.session, 10)
    if not recent:
        return Text(ctx.say("No tasks yet. Create one: newtask Title | https://…",
                            "还没有任务。创建：新任务 标题 | https://…"))
    lines = [ctx.say("Recent tasks:", "最近的任务：")]
    for task in recent:
        lines.append(f"• {_task_line(task, ctx)} — {words.word(words.TASK_STATUSES, task.status, ctx.lang)}")
    lines.append(ctx.say("Details and progress: task N", "详情与进度：任务 N"))
    return Text("\n".join(lines))


async def broadcast(ctx: Context, args: BroadcastArgs) -> Text:
    task = await task_store.get_task(ctx.session, args.task_id)
    if task is None:
        return Text(ctx.say(f"There is no task #{args.task_id}.", f"没有任务 #{args.task_id}。"))
    if task.status == "ended":
        return Text(ctx.say(f"Task #{task.id} has ended; it cannot be sent again.",
                            f"任务 #{task.id} 已结束，不能再下发。"))
    try:
        members = await task_store.resolve_recipients(ctx.session, args.targets)
    except task_store.TargetError as err:
        return Text(ctx.say(err.en, err.zh))
    target_text = " ".join(_quoted(t) for t in args.targets)
    confirm = ctx.say(f"broadcast {task.id} {target_text} confirm", f"下发 {task.id} {target_text} 确认")
    if len(confirm) > CONFIRM_QUOTE_MAX:
        confirm = ctx.say("your command again with “confirm” at the end", "原命令并在末尾加上“确认”")
    if not members:
        # Recorded all the same: people who join later with an invite code get it then.
        if not args.confirmed:
            return Text(ctx.say(f"No members match that target yet. To send task #{task.id} to whoever joins "
                                f"later, reply: {confirm}",
                                f"目前没有成员符合这个目标。如需发给之后加入的成员，请回复：{confirm}"))
        await task_store.record_broadcast(ctx.session, task, target_text, ctx.member, 0)
        return Text(ctx.say(f"Task #{task.id} will go to members matching {target_text} when they join.",
                            f"任务 #{task.id} 将在符合 {target_text} 的成员加入时发给他们。"))
    have_it = await task_store.already_delivered(ctx.session, task.id)
    new = [m for m in members if m.userid not in have_it]
    if not new:
        return Text(ctx.say(f"All {len(members)} matching members already have task #{task.id}.",
                            f"符合条件的 {len(members)} 人都已收到任务 #{task.id}。"))
    quota = await quota_store.hold_quota(ctx.session, now=ctx.now, rules=ctx.config.wecom)
    if not quota.allows(len(new)):
        return Text(over_quota(ctx, quota, len(new), what=(f"Task #{task.id}", f"任务 #{task.id} "), advice=(
            "Narrow the target (e.g. partner:NAME, region:NAME) or send it tomorrow.",
            "请缩小范围（如 伙伴:名称、区域:名称），或明天再发。")))
    if not args.confirmed:
        return Text(ctx.say(
            f"Task #{task.id} “{task.title}” will go to {len(new)} member(s)"
            f"{f' ({len(members) - len(new)} already have it)' if len(new) < len(members) else ''}.",
            f"任务 #{task.id}“{task.title}”将发给 {len(new)} 人"
            f"{f'（另有 {len(members) - len(new)} 人已收到）' if len(new) < len(members) else ''}。")
            + f"\n{quota_use(ctx, quota, len(new))}\n" + ctx.say(f"To send it, reply: {confirm}", f"确认下发请回复：{confirm}"))
    queued = await queue_task_cards(ctx, task, new, reminder=False)
    await task_store.record_broadcast(ctx.session, task, target_text, ctx.member, queued)
    return Text(ctx.say(f"Task #{task.id} is on its way to {queued} member(s). Progress: task {task.id}",
                        f"任务 #{task.id} 正在发给 {queued} 人。查看进度：任务 {task.id}"))


async def remind(ctx: Context, task_id: int) -> Text:
    task = await task_store.get_task(ctx.session, task_id)
    if task is None:
        return Text(ctx.say(f"There is no task #{task_id}.", f"没有任务 #{task_id}。"))
    if task.status == "ended":
        return Text(ctx.say(f"Task #{task.id} has ended.", f"任务 #{task.id} 已结束。"))
    members = await task_store.unshared_recipients(ctx.session, task.id)
    if not members:
        return Text(ctx.say(f"Everyone who got task #{task.id} has shared it (or it was not sent yet).",
                            f"收到任务 #{task.id} 的人都已分享（或任务还未下发）。"))
    purpose, rows = await card_rows(ctx.session, task, members, ctx.commands, ctx.config.server.timezone,
                                    reminder=True, automatic=False, now=ctx.now)
    fresh = await quota_store.new_rows(ctx.session, rows)  # not reminded of it today yet
    skipped = len(members) - len(fresh)
    if not fresh:
        return Text(ctx.say(f"All {skipped} member(s) who have not shared task #{task.id} were already reminded today.",
                            f"尚未分享任务 #{task.id} 的 {skipped} 人今天都已提醒过。"))
    quota = await quota_store.hold_quota(ctx.session, now=ctx.now, rules=ctx.config.wecom)
    if not quota.allows(len(fresh)):
        return Text(over_quota(ctx, quota, len(fresh), what=(f"A reminder of task #{task.id}", f"任务 #{task.id} 的提醒"),
                               advice=("Nobody was reminded; remind again tomorrow (China time), when the quota "
                                       "starts afresh.", "未发送任何提醒；请明天（北京时间）额度恢复后再催办。")))
    queued = await task_store.queue_messages(ctx.session, task_id=task.id, purpose=purpose, rows=fresh)
    return Text(ctx.say(
        f"Reminding {queued} member(s) who have not shared task #{task.id}"
        f"{f'; {skipped} were already reminded today' if skipped else ''}.",
        f"已提醒 {queued} 位尚未分享任务 #{task.id} 的成员{f'；{skipped} 人今天已提醒过' if skipped else ''}。")
        + "\n" + quota_use(ctx, quota, queued))


async def queue_task_cards(ctx: Context, task: Task, members: Sequence[Member | task_store.Recipient], *,
                           reminder: bool, automatic: bool = False) -> int:
    return await queue_cards(ctx.session, task, members, ctx.commands, ctx.config.server.timezone,
                             reminder=reminder, automatic=automatic, now=ctx.now)


async def queue_cards(session: Any, task: Task, members: Sequence[Member | task_store.Recipient], commands: CommandTable,
                      zone: str, *, reminder: bool, automatic: bool, now: datetime) -> int:
    purpose, rows = await card_rows(session, task, members, commands, zone, reminder=reminder, automatic=automatic,
                                    now=now)
    return await task_store.queue_messages(session, task_id=task.id, purpose=purpose, rows=rows)


async def card_rows(session: Any, task: Task, members: Sequence[Member | task_store.Recipient], commands: CommandTable,
                    zone: str, *, reminder: bool, automatic: bool, now: datetime) -> tuple[str, list[quota_store.Row]]:
    """One card per member, as (purpose, outbox rows); a key per (task, member) — and per day for
    reminders — means nobody gets the same card twice, even if the command or job runs twice."""
    content_ids = tuple(i.id for i in await content_store.attached_to(session, task.id, now))
    # One card, copied per member with its own id: building 10,000 alike took longer than sending them.
    if reminder:
        day = now.astimezone(ZoneInfo(zone)).strftime("%Y%m%d")
        kind = "autoremind" if automatic else f"remind{day}"
        card = task_card(task, commands, zone, reminder=True, card_id="", content_ids=content_ids)
        return task_store.REMINDER, [
            (m.userid, f"task:{task.id}:{kind}:member:{m.id}", {**card, "card_id": f"t{task.id}-{kind}-m{m.id}"})
            for m in members]
    card = task_card(task, commands, zone, reminder=False, card_id="", content_ids=content_ids)
    return task_store.TASK_CARD, [
        (m.userid, task_store.card_dedupe_key(task.id, m.id), {**card, "card_id": f"t{task.id}-m{m.id}"})
        for m in members]
