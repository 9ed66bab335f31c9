"""The content library in chat: content, newcontent, newscript, attach, retirecontent (DESIGN §2, §11)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from handlers import words
from handlers.context import ArgError, Context, parse_id
from handlers.links import tracked_url
from handlers.tasks import format_time
from handlers.replies import Card, News, Reply, Stamped, Text
from store import content as content_store
from store import content_files, forwards
from store import tasks as task_store
from store.models import ContentItem

# Replies list at most this many items; the library is narrowed with tags, like the lead pool with words.
PAGE = 10
_PIPE = re.compile(r"[|｜]")
_TAG_SPLIT = re.compile(r"[\s,，、;；]+")


# ----- argument parsers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class NewContentArgs:
    title: str
    url: str
    tags: list[str]
    audience: str


def _tags(text: str) -> list[str]:
    return [t for t in _TAG_SPLIT.split(text.strip()) if t]


def parse_newcontent(text: str) -> NewContentArgs:
    parts = [p.strip() for p in _PIPE.split(text)]
    if len(parts) < 2 or len(parts) > 4:
        raise ArgError("give a title and a link separated by |, then tags if you like",
                       "请用 | 分隔标题和链接，可再加标签")
    return NewContentArgs(parts[0], parts[1], _tags(parts[2]) if len(parts) > 2 else [],
                          parts[3] if len(parts) > 3 and parts[3] else "all")


@dataclass(frozen=True)
class NewScriptArgs:
    title: str
    body: str


def parse_newscript(text: str) -> NewScriptArgs:
    # Only the first | separates: the script itself may contain one.
    parts = _PIPE.split(text, maxsplit=1)
    if len(parts) < 2:
        raise ArgError("give a title and the script text separated by |", "请用 | 分隔标题和话术正文")
    return NewScriptArgs(parts[0].strip(), parts[1].strip())


@dataclass(frozen=True)
class ContentQuery:
    content_id: int | None
    tags: list[str]


def parse_content(text: str) -> ContentQuery:
    """`content 5` is one item; `content` or `content case study` lists, narrowed by tags."""
    tags = _tags(text)
    if len(tags) == 1 and tags[0].lstrip("#＃").isdecimal():
        return ContentQuery(parse_id(tags[0]), [])
    return ContentQuery(None, [t.lstrip("#＃")[:20] for t in tags[:5]])


@dataclass(frozen=True)
class AttachArgs:
    task_id: int
    content_id: int


def parse_attach(text: str) -> AttachArgs:
    ids = text.split()
    if len(ids) != 2:
        raise ArgError("give the task number and the content number, e.g. attach 12 5",
                       "请给出任务编号和素材编号，例如 关联 12 5")
    return AttachArgs(parse_id(ids[0]), parse_id(ids[1]))


# ----- helpers -------------------------------------------------------------------------------------
def _kind(ctx: Context, item: ContentItem) -> str:
    return words.word(words.CONTENT_KINDS, item.kind, ctx.lang)


def _cmd(ctx: Context, name: str) -> str:
    command = ctx.commands.lookup(name)
    return (command.name if ctx.lang == "en" else command.name_zh) if command else name


def _expiry(ctx: Context, at: datetime | None) -> str:
    return format_time(at, ctx.config.server.timezone, ctx.lang) if at else ctx.say("none", "长期有效")


def _line(ctx: Context, item: ContentItem, tags: list[str]) -> str:
    shown = f"#{item.id} [{_kind(ctx, item)}] {item.title}"
    if tags:
        shown += " · " + " ".join(f"#{t}" for t in tags)
    if ctx.member.role != "partner" and item.status != "published":
        shown += f" ({words.word(words.CONTENT_STATUSES, item.status, ctx.lang)})"
    return shown


# ----- handlers ------------------------------------------------------------------------------------
def _added(ctx: Context, item: ContentItem) -> Text:
    video = ctx.say(" (recognised as a video link)", "（识别为视频链接）") if item.kind == "video" else ""
    take = _cmd(ctx, "content")
    return Text(ctx.say(
        f"Content #{item.id} added{video}: {item.title}\nPartner staff get their own copy with: {take} {item.id}\n"
        f"Offer it on a task: attach TASK {item.id}",
        f"已添加素材 #{item.id}{video}：{item.title}\n伙伴发送“{take} {item.id}”获取专属版本\n"
        f"关联到任务：关联 任务编号 {item.id}"))


async def new_content(ctx: Context, args: NewContentArgs) -> Text:
    try:
        item = await content_store.create_content(ctx.session, title=args.title, url=args.url, tags=args.tags,
                                                  audience=args.audience, creator=ctx.member)
    except content_store.InvalidContent as problem:
        return Text(ctx.say(f"Content not added: {problem.en}.", f"未添加素材：{problem.zh}。"))
    return _added(ctx, item)


async def new_script(ctx: Context, args: NewScriptArgs) -> Text:
    try:
        item = await content_store.create_content(ctx.session, title=args.title, body=args.body, kind="script",
                                                  creator=ctx.member)
    except content_store.InvalidContent as problem:
        return Text(ctx.say(f"Script not added: {problem.en}.", f"未添加话术：{problem.zh}。"))
    return _added(ctx, item)


async def item_for(ctx: Context, content_id: int) -> ContentItem:
    """Content item `content_id` if the asker may see and take it (store's Refusal says why not)."""
    return await content_store.check_may_take(ctx.session, await content_store.get_content(ctx.session, content_id),
                                              content_id, ctx.member, ctx.now, ctx.config.server.timezone)


async def content(ctx: Context, query: ContentQuery) -> Reply | list[Reply]:
    if query.content_id is None:
        return await list_content(ctx, query.tags)
    item = await item_for(ctx, query.content_id)
    if ctx.member.role != "partner":
        return await show_content(ctx, item)
    return await my_copy(ctx, item)


async def list_content(ctx: Context, tags: list[str]) -> Text:
    items = await content_store.visible_content(ctx.session, ctx.member, tags, PAGE, ctx.now)
    if not items:
        if tags:
            return Text(ctx.say("No content with those tags.", "没有带这些标签的素材。"))
        if ctx.may_use("newcontent"):
            return Text(ctx.say("The library is empty. Add: newcontent Title | https://… | tags",
                                "素材库还是空的。添加：新素材 标题 | https://… | 标签"))
        return Text(ctx.say("No content for you yet.", "目前没有适合您的素材。"))
    tag_map = await content_store.tags_of(ctx.session, [i.id for i in items])
    lines = [ctx.say("Content library (newest first):", "素材库（最新在前）：")]
    lines += [f"• {_line(ctx, item, tag_map[item.id])}" for item in items]
    take = _cmd(ctx, "content")
    if ctx.member.role == "partner":
        lines.append(ctx.say(f"Your own copy: {take} {items[0].id}", f"获取专属版本：{take} {items[0].id}"))
    else:
        lines.append(ctx.say(f"Details: {take} N", f"详情：{take} N"))
    if len(items) == PAGE:
        lines.append(ctx.say(f"Showing {PAGE}; narrow with tags: {take} TAG", f"仅显示 {PAGE} 条；按标签筛选：{take} 标签"))
    return Text("\n".join(lines))


async def show_content(ctx: Context, item: ContentItem) -> Text:
    """What staff see: the item as stored, and how many members took their copy."""
    tags = (await content_store.tags_of(ctx.session, [item.id]))[item.id]
    status = words.word(words.CONTENT_STATUSES, item.status, ctx.lang)
    copies = await content_store.copies_taken(ctx.session, item.id)
    forwarded = forwarded_line(ctx, await forwards.forward_figures(ctx.session, content_id=item.id))
    lines = [f"#{item.id} [{_kind(ctx, item)}] {item.title}",
             ctx.say(f"Status: {status}. Audience: {item.audience}. Expires: {_expiry(ctx, item.expires_at)}.",
                     f"状态：{status}。适用对象：{item.audience}。有效期至：{_expiry(ctx, item.expires_at)}。"),
             ctx.say(f"Tags: {' '.join(tags) or 'none'}", f"标签：{' '.join(tags) or '无'}"),
             item.url or item.body,
             await _file_line(ctx, item),
             ctx.say(f"{copies} member(s) took their copy.", f"已有 {copies} 人获取专属版本。"),
             forwarded]
    return Text("\n".join(line for line in lines if line))


def forwarded_line(ctx: Context, figures: forwards.ForwardFigures) -> str:
    """`forward N` in WeCom: mass messages and the customers they reached, Moments posts ("" if none)."""
    if not figures.mass_messages and not figures.moments:
        return ""
    moments_en = f"; {figures.moments} Moments post(s), {figures.moments_published} published" if figures.moments else ""
    moments_zh = f"；客户朋友圈 {figures.moments} 条，已发表 {figures.moments_published} 条" if figures.moments else ""
    return ctx.say(f"Forwarded in WeCom: {figures.mass_messages} customer mass message(s), reaching "
                   f"{figures.reached} customer(s){moments_en}.",
                   f"企业微信转发：客户群发 {figures.mass_messages} 次，已送达 {figures.reached} 位客户{moments_zh}。")


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{max(1, size // 1024)} KB"


async def _file_line(ctx: Context, item: ContentItem) -> str:
    info = await content_files.file_info(ctx.session, item.id) if item.kind in ("file", "image") else None
    if info is None:
        return ""
    gate = ctx.say(" Behind the sign-up form.", "留资后下载。") if item.gated else ""
    return ctx.say(f"File: {info.filename} ({_size(info.size)}).{gate}", f"文件：{info.filename}（{_size(info.size)}）。{gate}")


async def my_copy(ctx: Context, item: ContentItem) -> list[Reply]:
    copy = await content_store.take_copy(ctx.session, item, ctx.member)
    url = tracked_url(ctx, copy.code)
    if item.kind == "script":
        filled = await content_store.script_for(ctx.session, item, ctx.member, url)
        return [Text(ctx.say(f"Your script “{item.title}”, with your name and link — copy the next message:",
                             f"您的话术“{item.title}”已填好您的信息和专属链接，复制下一条发送即可：")),
                Text(filled)]
    if item.kind in ("image", "file"):
        return await _media_copy(ctx, item, copy.code)
    description = item.summary or ctx.say("Your own link: clicks and sign-ups count for you",
                                          "您的专属链接：点击和留资都记在您名下")
    return [News(title=item.title, description=description, url=url), Text(ctx.say(f"Your own link for content #{item.id} — forward it to your customers:\n{item.title}\n{url}",
                               f"您的素材 #{item.id} 专属链接，转发给客户即可：\n{item.title}\n{url}"))]


async def _media_copy(ctx: Context, item: ContentItem, code: str) -> list[Reply]:
    """An image with the member's QR code (drawn by the sender, like a poster); a file behind their
    tracked download page /d/<code> (the sign-up form first when the item is gated)."""
    info = await content_files.file_info(ctx.session, item.id)
    if info is None:
        return [Text(ctx.say(f"Content #{item.id} has no file yet; ask your marketer.",
                             f"素材 #{item.id} 还没有上传文件，请联系市场人员。"))]
    if item.kind == "image":
        return [Stamped(item.id, info.sha256, tracked_url(ctx, code)),
                Text(ctx.say(f"Your copy of “{item.title}”: scans of its QR code count for you — forward the picture.",
                             f"这是您的“{item.title}”专属图片，扫码都会记在您名下，转发图片即可。"))]
    url = tracked_url(ctx, code, "d")
    size = _size(info.size)
    gate_en, gate_zh = (" Visitors leave their details first; leads count for you.", "访客先留资再下载，线索记在您名下。") \
        if item.gated else ("", "")
    card = Card(title=item.title, description=item.summary or f"{info.filename} · {size}", url=url,
                card_id=f"c{item.id}-m{ctx.member.id}")
    return [card, Text(ctx.say(f"Your own download link for content #{item.id} ({info.filename}, {size}) — forward it "
                               f"to your customers:{gate_en}\n{url}",
                               f"您的素材 #{item.id} 专属下载链接（{info.filename}，{size}），转发给客户即可。{gate_zh}\n{url}"))]


async def attach(ctx: Context, args: AttachArgs) -> Text:
    task = await task_store.get_task(ctx.session, args.task_id)
    if task is None:
        return Text(ctx.say(f"There is no task #{args.task_id}.", f"没有任务 #{args.task_id}。"))
    item = await content_store.get_content(ctx.session, args.content_id)
    if item is None:
        return Text(ctx.say(f"There is no content #{args.content_id}.", f"没有素材 #{args.content_id}。"))
    new = await content_store.attach(ctx.session, task, item)
    if not new:
        return Text(ctx.say(f"Content #{item.id} is already attached to task #{task.id}.",
                            f"素材 #{item.id} 已关联到任务 #{task.id}。"))
    return Text(ctx.say(f"Content #{item.id} “{item.title}” is attached to task #{task.id}: its card offers it "
                        f"from now on.",
                        f"素材 #{item.id}“{item.title}”已关联到任务 #{task.id}：之后发出的任务卡片会附带它。"))


async def retire_content(ctx: Context, content_id: int) -> Text:
    item = await content_store.get_content(ctx.session, content_id)
    if item is None:
        return Text(ctx.say(f"There is no content #{content_id}.", f"没有素材 #{content_id}。"))
    if item.status == "retired":
        return Text(ctx.say(f"Content #{item.id} is already retired.", f"素材 #{item.id} 已经下架。"))
    await content_store.update_content(ctx.session, item, status="retired")
    return Text(ctx.say(f"Content #{item.id} is retired: nobody can take a copy, and existing links end.",
                        f"素材 #{item.id} 已下架：不能再获取，已分享的链接也将失效。"))
