"""link N / 链接 N: a member's own tracked link for a task."""
from __future__ import annotations

from handlers.replies import Text
from handlers.context import Context
from handlers.tasks import given_or_newest_task, no_task
from store import links as link_store


def tracked_url(ctx: Context, code: str, path: str = "t") -> str:
    """/t/<code> redirects to the task's page; /l/<code> is the sign-up form."""
    return f"{ctx.config.server.public_base_url.rstrip('/')}/{path}/{code}"


async def my_link(ctx: Context, task_id: int | None) -> Text:
    task = await given_or_newest_task(ctx, task_id)
    if task is None:
        return no_task(ctx, task_id)
    if task.status == "ended":
        return Text(ctx.say(f"Task #{task.id} has ended.", f"任务 #{task.id} 已结束。"))
    link = await link_store.get_or_create_link(ctx.session, task, ctx.member, "link")
    await link_store.record_share(ctx.session, task, ctx.member, "link")
    copy = task.description or task.title
    form = tracked_url(ctx, link.code, "l")
    return Text(ctx.say(
        f"Your link for task #{task.id} — every click on it counts for you:\n{copy}\n{tracked_url(ctx, link.code)}\n"
        f"Sign-up form (leads come to you): {form}",
        f"您在任务 #{task.id} 的专属链接（点击都会记在您名下）：\n{copy}\n{tracked_url(ctx, link.code)}\n"
        f"报名表（留资线索直接归您）：{form}"))
