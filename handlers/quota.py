"""WeCom's daily send quota in chat (store.outbox.send_quota, store/quota.py): what a command uses of
today's, and the refusal of one that would go past it, with the numbers."""
from __future__ import annotations

from handlers.context import Context
from store.outbox import SendQuota


def quota_use(ctx: Context, quota: SendQuota, uses: int) -> str:
    return ctx.say(
        f"Today's WeCom send quota: {quota.used} of {quota.limit} used; this uses {uses}, leaving {quota.left - uses}.",
        f"今天企业微信发送额度：已用 {quota.used} / 共 {quota.limit}，本次用 {uses}，剩余 {quota.left - uses}。")


def over_quota(ctx: Context, quota: SendQuota, count: int, *, what: tuple[str, str], advice: tuple[str, str]) -> str:
    """`what` (en, zh) would go to `count` members, more than today's quota has left; `advice`: what to do."""
    return ctx.say(
        f"{what[0]} would go to {count} member(s), more than is left of today's WeCom send quota: "
        f"{quota.used} of {quota.limit} used, {quota.left} left. {advice[0]}",
        f"{what[1]}要发给 {count} 人，超出今天企业微信的发送额度：已用 {quota.used} / 共 {quota.limit}，"
        f"只剩 {quota.left}。{advice[1]}")
