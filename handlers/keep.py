"""Content added in chat from an upload (DESIGN §2 `keep` / `收录`): a marketer sends an image or a file
to the bot, the bot offers `收录 标题 | 标签…`, and that command fetches the upload from the platform
(ctx.media, never HTTP here) and makes it a content item through store/content_files.py's rules."""
from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.context import ArgError, Context
from handlers.replies import Text
from store import content_files, content_uploads
from store.content import InvalidContent, check_tags
from store.tasks import check_title

_PIPE = re.compile(r"[|｜]")
_TAG_SPLIT = re.compile(r"[\s,，、;；]+")


@dataclass(frozen=True)
class KeepArgs:
    title: str
    tags: list[str]


def parse_keep(text: str) -> KeepArgs:
    """`Title | tag tag`: the title is required, tags are optional (spaces or commas between them)."""
    parts = _PIPE.split(text, maxsplit=1)
    title, tags = parts[0].strip(), parts[1] if len(parts) > 1 else ""
    if not title:
        raise ArgError("give the title first: keep Title | tags", "请先写标题：收录 标题 | 标签")
    try:
        return KeepArgs(check_title(title), check_tags([t for t in _TAG_SPLIT.split(tags) if t]))
    except InvalidContent as problem:
        raise ArgError(problem.en, problem.zh) from None


def _what(media_type: str, filename: str) -> tuple[str, str]:
    if media_type == "image":
        return "picture", "图片"
    return (f"file “{filename}”", f"文件“{filename}”") if filename else ("file", "文件")


async def offer(ctx: Context, media_id: str, media_type: str, filename: str) -> Text:
    """An image or file from a marketer: remembered as their pending upload (the newest wins), and the
    command that keeps it offered in both languages (nothing they sent says which they write)."""
    await content_uploads.remember_upload(ctx.session, ctx.member, media_id, media_type, filename, ctx.now)
    en, zh = _what(media_type, filename)
    return Text(f"收到{zh}。收录到素材库请发送：\n收录 标题 | 标签…\n例如：收录 客户案例 | 制造 案例（3 天内有效）\n\n"
                f"Got your {en}. To add it to the content library, send:\nkeep Title | tags…\n"
                f"e.g. keep Customer case | manufacturing case (within 3 days)")


async def keep(ctx: Context, args: KeepArgs) -> Text:
    pending = await content_uploads.pending_upload(ctx.session, ctx.member, ctx.now)
    if pending is None:
        return Text(ctx.say("Nothing to keep: first send me the picture or file here, then: keep Title | tags",
                            "没有待收录的文件：请先把图片或文件发给我，再发送：收录 标题 | 标签"))
    en, zh = _what(pending.media_type, pending.filename)
    again = ctx.say(f"The {en} you sent is no longer available (WeCom keeps uploads 3 days): send it again, "
                    "then keep Title | tags.",
                    f"您发送的{zh}已失效（企业微信只保留 3 天）：请重新发送，再发送“收录 标题 | 标签”。")
    if pending.expired:
        await content_uploads.forget_upload(ctx.session, ctx.member)
        return Text(again)
    if ctx.media is None:
        return Text(ctx.say("Uploads cannot be fetched here; add the file through the admin API.",
                            "此处无法获取上传的文件，请通过管理后台上传。"))
    got = await ctx.media.fetch(pending.media_id, content_files.MAX_BYTES)
    if got.outcome == "unavailable":  # the upload stays pending: trying again may work
        return Text(ctx.say("WeCom cannot be reached right now; send the same command again in a minute.",
                            "暂时无法连接企业微信，请稍后再发送一次同样的命令。"))
    if got.outcome == "expired":
        await content_uploads.forget_upload(ctx.session, ctx.member)
        return Text(again)
    try:
        if got.outcome == "too_large":
            raise content_files.too_big(got.size)
        item = await content_files.create_file_content(
            ctx.session, kind=pending.kind, title=args.title, tags=args.tags, creator=ctx.member,
            filename=pending.filename or got.filename or args.title, data=got.data)
    except InvalidContent as problem:
        # The same bytes would fail again: the upload is dropped, another one can be sent.
        await content_uploads.forget_upload(ctx.session, ctx.member)
        return Text(ctx.say(f"Not kept: {problem.en}. Send another {pending.media_type}.",
                            f"未收录：{problem.zh}。请重新发送{'图片' if pending.kind == 'image' else '文件'}。"))
    await content_uploads.forget_upload(ctx.session, ctx.member)
    take = ctx.commands.lookup("content")
    word = (take.name_zh if ctx.lang == "zh" else take.name) if take else "content"
    return Text(ctx.say(
        f"Kept as content #{item.id} ({en.split(' ')[0]}): {item.title}\n"
        f"Partner staff get their own copy with: {word} {item.id}\nOffer it on a task: attach TASK {item.id}",
        f"已收录为素材 #{item.id}（{'图片' if item.kind == 'image' else '文件'}）：{item.title}\n"
        f"伙伴发送“{word} {item.id}”获取专属版本\n关联到任务：关联 任务编号 {item.id}"))
