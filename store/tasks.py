"""Tasks, broadcast targeting and delivery progress."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import chunked
from store.models import TASK_STATUSES, Broadcast, Member, MemberTag, OutboxMessage, Partner, Share, Task, utcnow
from store import outbox_queue
from store.partners import partner_by_name
from store.text import clean_text

TITLE_MAX, DESCRIPTION_MAX, URL_MAX = 64, 1000, 2000
TEMPLATE_PATTERN = re.compile(r"^[a-z0-9_-]{1,32}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TASK_CARD, REMINDER = "task_card", "reminder"


class InvalidTask(Exception):
    """A field that cannot be stored; the messages say why, for chat (en/zh) and the API."""

    def __init__(self, field: str, en: str, zh: str) -> None:
        super().__init__(f"{field}: {en}")
        self.field, self.en, self.zh = field, en, zh


def check_title(title: str) -> str:
    title = clean_text(title)
    if not title:
        raise InvalidTask("title", "the title is empty", "标题不能为空")
    if len(title) > TITLE_MAX:
        raise InvalidTask("title", f"the title is {len(title)} characters; at most {TITLE_MAX}",
                          f"标题有 {len(title)} 个字，最多 {TITLE_MAX} 个")
    if _CONTROL.search(title):
        raise InvalidTask("title", "the title has control characters", "标题含有控制字符")
    return title


def check_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise InvalidTask("url", "the link is empty", "链接不能为空")
    if len(url) > URL_MAX:
        raise InvalidTask("url", f"the link is longer than {URL_MAX} characters", f"链接超过 {URL_MAX} 个字符")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or re.search(r"\s", url) \
            or _CONTROL.search(url):
        raise InvalidTask("url", "the link must be a web address starting with http:// or https://",
                          "链接必须是以 http:// 或 https:// 开头的网址")
    if parts.username or parts.password:
        raise InvalidTask("url", "the link must not contain a user name or password", "链接不能包含用户名或密码")
    return url


def check_description(description: str) -> str:
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidTask("description", f"the description is longer than {DESCRIPTION_MAX} characters",
                          f"文案超过 {DESCRIPTION_MAX} 个字")
    return description


def template_names(templates_dir: Path | str) -> list[str]:
    """The available poster templates: folders with a layout.json and a background.png."""
    return sorted(p.parent.name for p in Path(templates_dir).glob("*/layout.json") if (p.parent / "background.png").is_file())


def check_template(template: str, templates_dir: Path | str | None = None) -> str:
    """A template name as stored; with `templates_dir`, one of the templates there."""
    shown, template = template.strip()[:32], template.strip().lower()
    if templates_dir is not None and template not in (available := template_names(templates_dir)):
        raise InvalidTask("template", f"there is no poster template “{shown}”; templates: {', '.join(available)}",
                          f"没有名为“{shown}”的海报模板；可用模板：{'、'.join(available)}")
    if not TEMPLATE_PATTERN.match(template):
        raise InvalidTask("template", "the template name must be 1-32 letters, digits, - or _",
                          "模板名只能包含字母、数字、- 或 _（1-32 个字符）")
    return template


def check_deadline(deadline: datetime | None, now: datetime) -> datetime | None:
    if deadline is not None and deadline <= now:
        raise InvalidTask("deadline", "the deadline is in the past", "截止时间已经过去")
    return deadline


COST_MAX = Decimal("10000000000")


def check_cost(value: object) -> Decimal | None:
    """What a task cost, for its ROI: a non-negative amount (number or string), or null for none."""
    if value is None or value == "":
        return None
    try:
        cost = Decimal(str(value).replace(",", "")).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        raise InvalidTask("cost", "cost must be an amount like 5000 or 5000.50", "成本须为金额，例如 5000") from None
    if isinstance(value, bool) or not cost.is_finite() or not 0 <= cost < COST_MAX:
        raise InvalidTask("cost", "cost must be from 0 to less than 10,000,000,000", "成本须在 0 到 100 亿之间")
    return cost


async def create_task(session: AsyncSession, *, title: str, url: str, creator: Member | None,
                      description: str = "", template: str = "classic", deadline: datetime | None = None,
                      status: str = "draft", cost: Decimal | None = None,
                      templates_dir: Path | str | None = None) -> Task:
    """A new task; with `templates_dir`, its poster template must be one of those there."""
    if status not in ("draft", "active"):
        raise InvalidTask("status", "a new task is draft or active", "新任务的状态须为 draft 或 active")
    task = Task(title=check_title(title), target_url=check_url(url), description=check_description(description),
                poster_template=check_template(template, templates_dir), deadline=check_deadline(deadline, utcnow()),
                status=status, creator_id=creator.id if creator else None, cost=cost)
    session.add(task)
    await session.flush()
    return task


# What change_task accepts, named as the admin API names them; a task only moves forward: draft → active → ended.
TASK_FIELDS = ("title", "url", "description", "template", "deadline", "status", "cost")
_STATUS_ORDER = {status: i for i, status in enumerate(TASK_STATUSES)}


async def change_task(session: AsyncSession, task: Task, changes: dict[str, Any], *,
                      templates_dir: Path | str | None = None) -> Task:
    """Apply `changes` (TASK_FIELDS; deadline a datetime or None) after checking all of them:
    InvalidTask names the first that cannot be stored, and then nothing changes."""
    unknown = sorted(set(changes) - set(TASK_FIELDS))
    if unknown:
        raise InvalidTask(unknown[0], f"unknown field(s): {', '.join(unknown)}", f"未知字段：{'、'.join(unknown)}")
    if task.status == "ended" and set(changes) - {"status"}:
        raise InvalidTask("status", "an ended task cannot be edited", "已结束的任务不能再编辑")
    values: dict[str, Any] = {}
    if "status" in changes:
        new = changes["status"]
        if new not in _STATUS_ORDER:
            raise InvalidTask("status", f"status must be one of {', '.join(TASK_STATUSES)}",
                              f"状态须为 {'、'.join(TASK_STATUSES)} 之一")
        if _STATUS_ORDER[new] < _STATUS_ORDER[task.status]:
            raise InvalidTask("status", f"a task cannot go from {task.status} back to {new}",
                              f"任务不能从 {task.status} 退回 {new}")
        values["status"] = new
    checks = {"title": ("title", check_title), "url": ("target_url", check_url),
              "description": ("description", check_description),
              "template": ("poster_template", lambda name: check_template(name, templates_dir)), "cost": ("cost", check_cost),
              "deadline": ("deadline", lambda deadline: check_deadline(deadline, utcnow()))}
    for field, (column, check) in checks.items():
        if field in changes:
            values[column] = check(changes[field])
    if "deadline" in values:
        values["auto_reminded_at"] = None  # a new deadline earns a new automatic reminder
    for column, value in values.items():
        setattr(task, column, value)
    await session.flush()
    return task


async def get_task(session: AsyncSession, task_id: int) -> Task | None:
    return await session.get(Task, task_id)


async def published_tasks(session: AsyncSession) -> list[tuple[int, str]]:
    """(id, title) of every task past draft, oldest first: the tasks reports list."""
    return [(tid, title) for tid, title in await session.execute(
        select(Task.id, Task.title).where(Task.status != "draft").order_by(Task.id))]


# ----- targets -------------------------------------------------------------------------------------
TARGET_KINDS = {"partner": "partner", "伙伴": "partner", "region": "region", "区域": "region", "tag": "tag",
                "标签": "tag", "user": "user", "用户": "user"}
ALL_WORDS = ("all", "全部")


@dataclass
class TargetError(Exception):
    en: str
    zh: str


async def resolve_targets(session: AsyncSession, tokens: list[str], only_member_id: int | None = None) -> list[Member]:
    """Members matched by any target (or just whether `only_member_id` is); raise TargetError
    naming an unknown or empty one. Any number of targets: they are looked up in chunks."""
    found: dict[int, Member] = {}
    for match in await _target_matches(session, tokens):
        for member in await session.scalars(select(Member).where(
                Member.active.is_(True), match, *([Member.id == only_member_id] if only_member_id is not None else []))):
            found[member.id] = member
    return sorted(found.values(), key=lambda m: m.id)


@dataclass(frozen=True)
class Recipient:
    id: int
    userid: str


async def resolve_recipients(session: AsyncSession, tokens: list[str]) -> list[Recipient]:
    """resolve_targets for a broadcast, which needs only who: plain rows, not ten thousand members
    with their partner and tags loaded."""
    found: dict[int, Recipient] = {}
    for match in await _target_matches(session, tokens):
        for row in await session.execute(select(Member.id, Member.userid).where(Member.active.is_(True), match)):
            found[row.id] = Recipient(row.id, row.userid)
    return sorted(found.values(), key=lambda m: m.id)


async def _target_matches(session: AsyncSession, tokens: list[str]) -> list[Any]:
    conditions, users = [], []
    for token in tokens:
        token = token.replace("：", ":")
        if token.lower() in ALL_WORDS:
            conditions.append(Member.role == "partner")
            continue
        kind_word, _, value = token.partition(":")
        kind = TARGET_KINDS.get(kind_word.lower())
        if kind is None or not value:
            raise TargetError(
                f"“{token[:30]}” is not a target. Use all, partner:NAME, region:NAME, tag:NAME or user:ID",
                f"“{token[:30]}”不是有效目标。可用：全部、伙伴:名称、区域:名称、标签:名称、用户:ID")
        if kind == "user":
            users.append(value)
        else:
            conditions.append(await _target_condition(session, kind, value))
    users = list(dict.fromkeys(users))
    await _check_users(session, users)
    return [or_(*group) for group in chunked(conditions, 100)] + [Member.userid.in_(group) for group in chunked(users)]


async def _check_users(session: AsyncSession, userids: list[str]) -> None:
    known: set[str] = set()
    for group in chunked(userids):
        known.update(await session.scalars(select(Member.userid).where(Member.userid.in_(group), Member.active.is_(True))))
    for value in userids:
        if value not in known:
            raise TargetError(f"no member has user id “{value[:64]}”", f"没有用户ID为“{value[:64]}”的成员")


async def open_tasks_targeting(session: AsyncSession, member: Member) -> list[Task]:
    """Open tasks an earlier broadcast aimed at people like this member (all, their partner,
    region or tag): what someone who joins later should still get."""
    now = utcnow()
    rows = await session.execute(
        select(Task, Broadcast.targets).join(Broadcast, Broadcast.task_id == Task.id)
        .where(Task.status != "ended", or_(Task.deadline.is_(None), Task.deadline > now)).order_by(Task.id))
    found: dict[int, Task] = {}
    for task, targets in rows:
        if task.id in found:
            continue
        try:
            if await resolve_targets(session, shlex.split(targets), only_member_id=member.id):
                found[task.id] = task
        except (ValueError, TargetError):
            continue  # a target that no longer exists (a renamed partner) reaches nobody new
    return list(found.values())


async def _target_condition(session: AsyncSession, kind: str, value: str) -> Any:
    if kind == "partner":
        partner = await partner_by_name(session, value)
        if partner is None:
            names = list(await session.scalars(select(Partner.name).order_by(Partner.name).limit(20)))
            raise TargetError(f"no partner is called “{value[:40]}”; partners: {', '.join(names) or 'none yet'}",
                              f"没有名为“{value[:40]}”的伙伴；现有伙伴：{'、'.join(names) or '暂无'}")
        return and_(Member.partner_id == partner.id, Member.role == "partner")
    if kind == "region":
        regions = list(await session.scalars(
            select(Member.region).where(Member.role == "partner", Member.region != "").distinct().order_by(Member.region)))
        if value not in regions:
            raise TargetError(f"no partner staff in region “{value[:40]}”; regions: {', '.join(regions[:20]) or 'none'}",
                              f"区域“{value[:40]}”没有伙伴成员；现有区域：{'、'.join(regions[:20]) or '暂无'}")
        return and_(Member.region == value, Member.role == "partner")
    tags = list(await session.scalars(select(MemberTag.tag).distinct().order_by(MemberTag.tag)))
    if value not in tags:
        raise TargetError(f"no member has tag “{value[:40]}”; tags: {', '.join(tags[:20]) or 'none'}",
                          f"没有成员带有标签“{value[:40]}”；现有标签：{'、'.join(tags[:20]) or '暂无'}")
    return Member.id.in_(select(MemberTag.member_id).where(MemberTag.tag == value))


# ----- deliveries ----------------------------------------------------------------------------------
def card_dedupe_key(task_id: int, member_id: int) -> str:
    return f"task:{task_id}:member:{member_id}"


async def already_delivered(session: AsyncSession, task_id: int) -> set[str]:
    rows = await session.scalars(select(OutboxMessage.recipient).where(
        OutboxMessage.task_id == task_id, OutboxMessage.purpose == TASK_CARD))
    return set(rows)


# Queueing lives in store/outbox_queue.py; jobs and handlers know it as task_store.queue_messages.
queue_messages = outbox_queue.queue_messages


async def delivery_progress(session: AsyncSession, task_id: int, purpose: str = TASK_CARD) -> dict[str, int]:
    rows = await session.execute(
        select(OutboxMessage.status, func.count()).where(OutboxMessage.task_id == task_id,
                                                         OutboxMessage.purpose == purpose)
        .group_by(OutboxMessage.status))
    # waiting: refused outside WeChat's 48-hour window, until the follower writes again.
    counts = {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "waiting": 0}
    counts.update({status: n for status, n in rows.all()})
    return counts


async def tasks_for_member(session: AsyncSession, member: Member, *, open_only: bool = True) -> list[tuple[Task, bool]]:
    """Tasks delivered to this member (newest first) and whether they have shared each."""
    delivered = select(OutboxMessage.task_id).where(OutboxMessage.recipient == member.userid,
                                                     OutboxMessage.purpose == TASK_CARD)
    shared = exists().where(Share.task_id == Task.id, Share.member_id == member.id)
    query = select(Task, shared).where(Task.id.in_(delivered)).order_by(Task.id.desc())
    if open_only:
        query = query.where(Task.status != "ended")
    return [(task, bool(has_shared)) for task, has_shared in (await session.execute(query)).all()]


async def was_delivered_to(session: AsyncSession, task_id: int, member: Member) -> bool:
    return bool(await session.scalar(select(exists().where(
        OutboxMessage.task_id == task_id, OutboxMessage.purpose == TASK_CARD,
        OutboxMessage.recipient == member.userid))))


async def reached_partner(session: AsyncSession, task_id: int, partner_id: int | None) -> bool:
    """Whether the task's card went to anyone of this partner company."""
    return partner_id is not None and bool(await session.scalar(select(exists().where(
        OutboxMessage.task_id == task_id, OutboxMessage.purpose == TASK_CARD,
        OutboxMessage.recipient.in_(select(Member.userid).where(Member.partner_id == partner_id))))))


async def unshared_recipients(session: AsyncSession, task_id: int, sent_before: datetime | None = None) -> list[Member]:
    """Members the task card reached (sent, and before `sent_before` if given) who have not shared it."""
    recipients = select(OutboxMessage.recipient).where(
        OutboxMessage.task_id == task_id, OutboxMessage.purpose == TASK_CARD, OutboxMessage.status == "sent",
        *([OutboxMessage.sent_at <= sent_before] if sent_before else []))
    shared = exists().where(Share.task_id == task_id, Share.member_id == Member.id)
    return list(await session.scalars(
        select(Member).where(Member.userid.in_(recipients), Member.active.is_(True), ~shared).order_by(Member.id)))


async def has_shared(session: AsyncSession, task_id: int, member: Member) -> bool:
    return bool(await session.scalar(select(exists().where(Share.task_id == task_id, Share.member_id == member.id))))


async def share_count(session: AsyncSession, task_id: int) -> int:
    return int(await session.scalar(select(func.count(func.distinct(Share.member_id))).where(Share.task_id == task_id)) or 0)


async def claim_auto_reminder(session: AsyncSession, task_id: int) -> bool:
    """True for exactly one caller across instances: the one that sends the automatic reminder."""
    result = await session.execute(update(Task).where(Task.id == task_id, Task.auto_reminded_at.is_(None))
                                   .values(auto_reminded_at=utcnow()))
    return result.rowcount == 1


async def tasks_due_for_auto_reminder(session: AsyncSession, before: datetime) -> list[Task]:
    now = utcnow()
    return list(await session.scalars(select(Task).where(
        Task.status == "active", Task.auto_reminded_at.is_(None), Task.deadline.is_not(None),
        Task.deadline > now, Task.deadline <= before)))


async def recent_tasks(session: AsyncSession, limit: int) -> list[Task]:
    return list(await session.scalars(select(Task).order_by(Task.id.desc()).limit(limit)))


async def record_broadcast(session: AsyncSession, task: Task, targets: str, by: Member, recipients: int) -> None:
    if task.status == "draft":
        task.status = "active"
        task.starts_at = task.starts_at or utcnow()
    if len(targets) > 500:  # cut between targets: half a user id could name someone else
        targets = targets[:501].rsplit(" ", 1)[0][:500]
    session.add(Broadcast(task_id=task.id, targets=targets, created_by=by.id, recipients=recipients))
    await session.flush()
