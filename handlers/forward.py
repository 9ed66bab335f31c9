"""`forward N` / `转发 N` (DESIGN §2, §11): the member's own copy of content N as a WeCom customer
mass message, sender the member, their tracked link as its attachment; they confirm it in WeCom's
客户群发. Members without customer-contact permission (or without customers) get their copy instead."""
from __future__ import annotations

from handlers.content import my_copy
from handlers.context import Context, MassMessage
from handlers.links import tracked_url
from handlers.replies import Reply, Text
from store import content as content_store
from store import forwards
from store.partners import partner_by_id


async def forward(ctx: Context, content_id: int) -> list[Reply]:
    item = await content_store.check_may_take(ctx.session, await content_store.get_content(ctx.session, content_id),
                                              content_id, ctx.member, ctx.now)
    # Taking the copy first: the link is the member's, and it counts as one share however often sent.
    copy = await content_store.take_copy(ctx.session, item, ctx.member)
    url = tracked_url(ctx, copy.code)
    if item.kind == "script":
        partner = await partner_by_id(ctx.session, ctx.member.partner_id) if ctx.member.partner_id else None
        text = content_store.fill_script(item.body, name=ctx.member.name, company=partner.name if partner else "",
                                         link=url)
    else:
        text = item.summary or item.title
    sent = (await ctx.customers.mass_message(ctx.member.userid, text, item.title, item.summary, url)
            if ctx.customers is not None else MassMessage("unavailable"))
    if sent.outcome != "created":
        return [*await my_copy(ctx, item), Text(_why_not(ctx, sent.outcome))]
    await forwards.record_forward(ctx.session, item, ctx.member, sent.msgid, sent.reachable)
    return [Text(ctx.say(
        f"Content #{item.id} “{item.title}” is ready to go to your {sent.reachable} WeCom customer(s) with your own "
        f"link. It waits for you: open WeCom → Customer mass messages (客户群发) and confirm to send it.\n{url}",
        f"素材 #{item.id}“{item.title}”已生成客户群发（附您的专属链接），可发给您的 {sent.reachable} 位客户。"
        f"请在企业微信「客户群发」中确认发送。\n{url}"))]


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
