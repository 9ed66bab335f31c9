"""`forward N` / `转发 N` (DESIGN §2, §11): the member's own copy of content N as a WeCom customer
mass message, sender the member, their tracked link as its attachment; they confirm it in WeCom's
客户群发. Where allowed (`[wecom] forward_to_moments`) also a Moments (客户朋友圈) task only they post.
The handler only records the forward (one per chat message, Context.message_id) after asking WeCom
how many customers the member has, which only reads: WeCom creates it once the message is committed
(bot/forwarding.py), so answering the same message twice never makes a second mass message. Members
without customer-contact permission (or without customers) get their copy instead."""
from __future__ import annotations

from handlers.content import item_for, my_copy
from handlers.context import Context, MassMessage
from handlers.links import tracked_url
from handlers.replies import Reply, Text
from store import content as content_store
from store import forwards


async def forward(ctx: Context, content_id: int) -> list[Reply]:
    item = await item_for(ctx, content_id)
    # Taking the copy first: the link is the member's, and it counts as one share however often sent.
    copy = await content_store.take_copy(ctx.session, item, ctx.member)
    url = tracked_url(ctx, copy.code)
    if item.kind == "script":
        text = await content_store.script_for(ctx.session, item, ctx.member, url)
    else:
        text = item.summary or item.title
    ready = (await ctx.customers.customers(ctx.member.userid)
             if ctx.customers is not None else MassMessage("unavailable"))
    if ready.outcome != "ready":
        return [*await my_copy(ctx, item), Text(_why_not(ctx, ready.outcome))]
    moment = ctx.config.wecom.forward_to_moments
    await forwards.record_forward(ctx.session, item, ctx.member, inbox_id=ctx.message_id, text=text,
                                  title=item.title, description=item.summary, url=url, reachable=ready.reachable,
                                  moment=moment)
    also = ctx.say(" A Moments post (客户朋友圈) with your link waits for you there too: publish it from WeCom → "
                   "Customer Moments.", "另已生成客户朋友圈任务（附您的专属链接），请在企业微信「客户朋友圈」中发表。") if moment else ""
    return [Text(ctx.say(
        f"Content #{item.id} “{item.title}” is ready to go to your {ready.reachable} WeCom customer(s) with your own "
        f"link. It waits for you: open WeCom → Customer mass messages (客户群发) and confirm to send it.{also}\n{url}",
        f"素材 #{item.id}“{item.title}”已生成客户群发（附您的专属链接），可发给您的 {ready.reachable} 位客户。"
        f"请在企业微信「客户群发」中确认发送。{also}\n{url}"))]


def _why_not(ctx: Context, outcome: str) -> str:
    if outcome == "no_permission":
        return ctx.say("It could not go to your customers from here: your WeCom account has no customer-contact "
                       "(客户联系) permission. Forward your copy above yourself, or ask your admin for the permission.",
                       "无法替您群发给客户：您的企业微信账号没有“客户联系”权限。请手动转发上面的专属版本，或联系管理员开通权限。")
    if outcome == "no_customers":
        return ctx.say("You have no WeCom customers to send it to yet: forward your copy above yourself.",
                       "您在企业微信中还没有可群发的客户：请手动转发上面的专属版本。")
    return ctx.say("WeCom could not create the mass message just now: forward your copy above yourself, or try "
                   "again later.", "企业微信暂时无法创建客户群发：请手动转发上面的专属版本，或稍后再试。")
