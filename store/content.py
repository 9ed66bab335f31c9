"""The content library's rules and writes (DESIGN §11): what an item may hold, who may see and take
it, a member's copy (a tracked link and a share that name the item), attachments to tasks."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import Refusal
from store.db import dialect_insert
from store.links import new_code
from store.partners import partner_by_id
from store.models import (CONTENT_STATUSES, ContentAttachment, ContentItem, ContentTag, Member, OutboxMessage,
                          Share, Task, TrackedLink, utcnow)
from store.tasks import TASK_CARD, InvalidTask, TargetError, check_title, check_url, resolve_targets
from store.text import clean_text

# The field errors speak like a task's (title, url): one kind of "this cannot be stored".
InvalidContent = InvalidTask
STAFF_ROLES = ("marketer", "admin")
SUMMARY_MAX, BODY_MAX, TAG_MAX, TAGS_MAX, AUDIENCE_MAX = 500, 1000, 20, 10, 500
# Sites whose pages are a video player: such a link is a "video" item (shown as one; tracked alike).
VIDEO_HOSTS = ("youtube.com", "youtu.be", "bilibili.com", "b23.tv", "v.qq.com", "ixigua.com", "douyin.com",
               "channels.weixin.qq.com", "vimeo.com")
# A talk script's variables, in either language, and the value each stands for.
VARIABLES = {"姓名": "name", "公司": "company", "链接": "link", "name": "name", "company": "company", "link": "link"}
_VARIABLE = re.compile(r"\{([^{}\n]{0,20})\}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Partners' listings check the audience of at most this many items, newest first.
SCAN_LIMIT = 500


def kind_of_url(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return "video" if any(host == h or host.endswith("." + h) for h in VIDEO_HOSTS) else "link"


def check_tags(tags: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(t for t in (clean_text(t).lstrip("#＃") for t in tags) if t))
    if len(cleaned) > TAGS_MAX:
        raise InvalidContent("tags", f"at most {TAGS_MAX} tags", f"最多 {TAGS_MAX} 个标签")
    for tag in cleaned:
        if len(tag) > TAG_MAX or _CONTROL.search(tag):
            raise InvalidContent("tags", f"a tag is at most {TAG_MAX} characters: “{tag[:TAG_MAX]}…”",
                                 f"标签最多 {TAG_MAX} 个字：“{tag[:TAG_MAX]}…”")
    return cleaned


def check_script(body: str) -> str:
    body = body.strip()
    if not body:
        raise InvalidContent("body", "the script text is empty", "话术正文不能为空")
    if len(body) > BODY_MAX:
        raise InvalidContent("body", f"the script is {len(body)} characters; at most {BODY_MAX}",
                             f"话术有 {len(body)} 个字，最多 {BODY_MAX} 个")
    unknown = [name for name in _VARIABLE.findall(body) if name.strip() not in VARIABLES]
    if unknown:
        raise InvalidContent("body", f"unknown variable {{{unknown[0]}}}; use {{name}} {{company}} {{link}} "
                                     "(or {姓名} {公司} {链接})",
                             f"未知变量 {{{unknown[0]}}}；可用 {{姓名}} {{公司}} {{链接}}（或 {{name}} {{company}} {{link}}）")
    return body


def fill_script(body: str, *, name: str, company: str, link: str) -> str:
    values = {"name": name, "company": company, "link": link}
    return _VARIABLE.sub(lambda m: values.get(VARIABLES.get(m[1].strip(), ""), m[0]), body)


async def script_for(session: AsyncSession, item: ContentItem, member: Member, link: str) -> str:
    """A talk script filled for `member`: their name, their company, their own link."""
    partner = await partner_by_id(session, member.partner_id) if member.partner_id else None
    return fill_script(item.body, name=member.name, company=partner.name if partner else "", link=link)


async def check_audience(session: AsyncSession, audience: str) -> str:
    """Broadcast targets, checked like a broadcast's (unknown partner, region or tag: InvalidContent)."""
    audience = clean_text(audience.replace("“", '"').replace("”", '"')) or "all"
    if len(audience) > AUDIENCE_MAX:
        raise InvalidContent("audience", f"the audience is longer than {AUDIENCE_MAX} characters",
                             f"适用对象超过 {AUDIENCE_MAX} 个字符")
    try:
        await resolve_targets(session, shlex.split(audience))
    except ValueError:
        raise InvalidContent("audience", "a quote is not closed", "引号没有闭合") from None
    except TargetError as err:
        raise InvalidContent("audience", err.en, err.zh) from None
    return audience


def check_status(status: str) -> str:
    if status not in CONTENT_STATUSES:
        raise InvalidContent("status", f"status is one of {', '.join(CONTENT_STATUSES)}",
                             "状态须为 draft（草稿）、published（已发布）或 retired（已下架）")
    return status


def check_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    if expires_at is not None and expires_at <= now:
        raise InvalidContent("expires_at", "the expiry is in the past", "有效期已经过去")
    return expires_at


async def set_tags(session: AsyncSession, item: ContentItem, tags: list[str]) -> None:
    for old in await session.scalars(select(ContentTag).where(ContentTag.content_id == item.id)):
        await session.delete(old)
    await session.flush()
    session.add_all(ContentTag(content_id=item.id, tag=tag) for tag in check_tags(tags))
    await session.flush()


async def create_content(session: AsyncSession, *, title: str, creator: Member | None, url: str = "",
                         body: str = "", kind: str | None = None, tags: list[str] = (), audience: str = "all",
                         summary: str = "", status: str = "published", expires_at: datetime | None = None
                         ) -> ContentItem:
    """A link or video link (`url`) or a talk script (`body`). Files and images come later."""
    title, tags = check_title(title), check_tags(list(tags))
    if kind == "script" or (kind is None and body):
        kind, body, url = "script", check_script(body), ""
    else:
        url = check_url(url)
        kind = kind or kind_of_url(url)
        if kind not in ("link", "video"):
            raise InvalidContent("kind", "kind is link, video or script here (files and images are uploaded)",
                                 "此处类型须为链接、视频链接或话术（文件和图片请上传）")
    summary = clean_text(summary)
    if len(summary) > SUMMARY_MAX:
        raise InvalidContent("summary", f"the summary is longer than {SUMMARY_MAX} characters",
                             f"摘要超过 {SUMMARY_MAX} 个字")
    item = ContentItem(kind=kind, title=title, url=url, body=body, summary=summary,
                       audience=await check_audience(session, audience), status=check_status(status),
                       expires_at=check_expiry(expires_at, utcnow()), created_by=creator.id if creator else None)
    session.add(item)
    await session.flush()
    await set_tags(session, item, tags)
    return item


async def get_content(session: AsyncSession, content_id: int) -> ContentItem | None:
    return await session.get(ContentItem, content_id)


async def tags_of(session: AsyncSession, content_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {i: [] for i in content_ids}
    for content_id, tag in await session.execute(
            select(ContentTag.content_id, ContentTag.tag).where(ContentTag.content_id.in_(content_ids))
            .order_by(ContentTag.tag)):
        found[content_id].append(tag)
    return found


async def in_audience(session: AsyncSession, item: ContentItem, member: Member) -> bool:
    """The broadcast matcher decides: a target that no longer exists (a renamed partner) reaches nobody."""
    try:
        return bool(await resolve_targets(session, shlex.split(item.audience), only_member_id=member.id))
    except (ValueError, TargetError):
        return False


async def _offered_on_a_task_to(session: AsyncSession, item: ContentItem, member: Member) -> bool:
    """Attached to a task whose card this member got: the task's audience may take it too."""
    return bool(await session.scalar(select(exists().where(
        ContentAttachment.content_id == item.id, OutboxMessage.task_id == ContentAttachment.task_id,
        OutboxMessage.purpose == TASK_CARD, OutboxMessage.recipient == member.userid))))


def is_live(item: ContentItem, now: datetime) -> bool:
    return item.status == "published" and (item.expires_at is None or item.expires_at > now)


async def check_may_take(session: AsyncSession, item: ContentItem | None, content_id: int, member: Member,
                         now: datetime, zone: str = "UTC") -> ContentItem:
    """The item if this member may see and take it, else a Refusal saying why. Staff see every item;
    partner staff only published, unexpired items meant for them (others' items stay unnamed)."""
    if member.role in STAFF_ROLES and item is not None:
        return item
    if item is None or item.status == "draft" or not (await in_audience(session, item, member)
                                                       or await _offered_on_a_task_to(session, item, member)):
        raise Refusal(f"There is no content #{content_id} for you. Send content to see yours",
                      f"没有适合您的素材 #{content_id}。发送“素材”查看可用素材")
    if item.status == "retired":
        raise Refusal(f"Content #{content_id} has been retired and may no longer be shared",
                      f"素材 #{content_id} 已下架，不能再分享")
    if item.expires_at is not None and item.expires_at <= now:
        day = item.expires_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d")
        raise Refusal(f"Content #{content_id} expired on {day} and may no longer be shared",
                      f"素材 #{content_id} 已于 {day} 过期，不能再分享")
    return item


async def visible_content(session: AsyncSession, member: Member, tags: list[str], limit: int,
                          now: datetime) -> list[ContentItem]:
    """Newest first: every item for staff; for partner staff the live ones in their audience."""
    query = select(ContentItem).order_by(ContentItem.id.desc())
    for tag in tags:
        query = query.where(exists().where(ContentTag.content_id == ContentItem.id, ContentTag.tag == tag))
    if member.role in STAFF_ROLES:
        return list(await session.scalars(query.limit(limit)))
    found = []
    for item in await session.scalars(query.where(ContentItem.status == "published").limit(SCAN_LIMIT)):
        if is_live(item, now) and await in_audience(session, item, member):
            found.append(item)
            if len(found) == limit:
                break
    return found


@dataclass(frozen=True)
class Copy:
    item: ContentItem
    code: str
    first: bool  # the member's first copy of this item: the one that counted as a share


async def take_copy(session: AsyncSession, item: ContentItem, member: Member, channel: str = "link") -> Copy:
    """The member's own link for the item (made once, safe when two requests race) and, the first
    time, a share of the item: only the request whose insert made the link may record it, so two
    taking at once count one share."""
    values = dict(code=new_code(), content_id=item.id, member_id=member.id, channel=channel, created_at=utcnow())
    made = await session.execute(dialect_insert(session)(TrackedLink).values(**values)
                                 .on_conflict_do_nothing(index_elements=["content_id", "member_id", "channel"]))
    code = (await session.scalars(select(TrackedLink.code).where(
        TrackedLink.content_id == item.id, TrackedLink.member_id == member.id, TrackedLink.channel == channel))).one()
    first = made.rowcount == 1 and not await session.scalar(
        select(exists().where(Share.content_id == item.id, Share.member_id == member.id)))
    if first:
        session.add(Share(content_id=item.id, member_id=member.id, channel=channel, created_at=utcnow()))
        await session.flush()
    return Copy(item, code, first)


async def attach(session: AsyncSession, task: Task, item: ContentItem) -> bool:
    """Offer the item on the task's card; False if it was already attached."""
    if item.status == "retired":
        raise Refusal(f"Content #{item.id} has been retired; publish it again first",
                      f"素材 #{item.id} 已下架，请先重新发布")
    result = await session.execute(dialect_insert(session)(ContentAttachment)
                                   .values(task_id=task.id, content_id=item.id, created_at=utcnow())
                                   .on_conflict_do_nothing(index_elements=["task_id", "content_id"]))
    return result.rowcount == 1


async def attached_to(session: AsyncSession, task_id: int, now: datetime, *, live_only: bool = True) -> list[ContentItem]:
    items = await session.scalars(select(ContentItem).join(ContentAttachment, ContentAttachment.content_id == ContentItem.id)
                                  .where(ContentAttachment.task_id == task_id).order_by(ContentAttachment.id))
    return [item for item in items if not live_only or is_live(item, now)]


async def copies_taken(session: AsyncSession, content_id: int) -> int:
    """Members who took their copy (each member's first copy is the item's share)."""
    return int(await session.scalar(select(func.count()).select_from(Share).where(Share.content_id == content_id)) or 0)


async def update_content(session: AsyncSession, item: ContentItem, *, title: str | None = None,
                         tags: list[str] | None = None, audience: str | None = None, status: str | None = None,
                         expires_at: datetime | None = None, clear_expiry: bool = False,
                         gated: bool | None = None) -> ContentItem:
    if gated is not None:
        if gated and item.kind != "file":
            raise InvalidContent("gated", "only a file can be behind the sign-up form", "只有文件可以设置留资后下载")
        item.gated = gated
    if title is not None:
        item.title = check_title(title)
    if audience is not None:
        item.audience = await check_audience(session, audience)
    if status is not None:
        item.status = check_status(status)
    if clear_expiry:
        item.expires_at = None
    elif expires_at is not None:
        item.expires_at = check_expiry(expires_at, utcnow())
    if tags is not None:
        await set_tags(session, item, tags)
    await session.flush()
    return item


async def recent_content(session: AsyncSession, limit: int) -> list[ContentItem]:
    return list(await session.scalars(select(ContentItem).order_by(ContentItem.id.desc()).limit(limit)))


async def content_ids_and_titles(session: AsyncSession) -> list[tuple[int, str]]:
    """(id, title) of every item, oldest first: the items the figures' export lists (drafts too: staff
    may take a copy of one)."""
    return [(cid, title) for cid, title in await session.execute(
        select(ContentItem.id, ContentItem.title).order_by(ContentItem.id))]
