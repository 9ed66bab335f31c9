"""poster N / 海报 N: the member's personal poster for a task, with a QR code of their own link."""
from __future__ import annotations

from handlers.replies import Poster, Text
from handlers.context import Context
from handlers.links import tracked_url
from handlers.tasks import given_or_newest_task, no_task
from store import links as link_store


async def my_poster(ctx: Context, task_id: int | None) -> list[Poster | Text]:
    task = await given_or_newest_task(ctx, task_id)
    if task is None:
        return [no_task(ctx, task_id)]
    if task.status == "ended":
        return [Text(ctx.say(f"Task #{task.id} has ended.", f"任务 #{task.id} 已结束。"))]
    link = await link_store.get_or_create_link(ctx.session, task, ctx.member, "poster")
    await link_store.record_share(ctx.session, task, ctx.member, "poster")
    partner = ctx.member.partner.name if ctx.member.partner else ""
    # The picture is drawn by the sender, after this transaction: chat handling stays fast.
    return [Poster(task.poster_template, tracked_url(ctx, link.code), ctx.member.name, partner, task.title),
            Text(ctx.say(f"Your poster for task #{task.id}: scans of its QR code count for you. "
                         f"Your link: link {task.id}",
                         f"这是您在任务 #{task.id} 的专属海报，扫码都会记在您名下。需要链接请发送：链接 {task.id}"))]
