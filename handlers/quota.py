"""WeCom's daily send quota in chat (store.outbox.send_quota, store/quota.py): what a command uses of
today's, and the refusal of one that would go past it, with the numbers. "Left" is what remains after
the share kept for replies to members' own messages ([wecom] reply_headroom), which commands may not
spend; the texts name that share so used + kept + left adds up to the day's total."""
from __future__ import annotations

from handlers.context import Context
from store.quota import Allowance


def _kept(ctx: Context, quota: Allowance) -> str:
    return ctx.say(f", {quota.kept} kept for replies", f"，留给回复 {quota.kept}") if quota.kept else ""


def quota_use(ctx: Context, quota: Allowance, uses: int) -> str:
    return ctx.say(
        f"Today's WeCom send quota: {quota.used} of {quota.limit} used{_kept(ctx, quota)}; this uses {uses}, "
        f"leaving {quota.left - uses}.",
        f"今天企业微信发送额度：已用 {quota.used} / 共 {quota.limit}{_kept(ctx, quota)}，本次用 {uses}，"
        f"剩余 {quota.left - uses}。")


def over_quota(ctx: Context, quota: Allowance, count: int, *, what: tuple[str, str], advice: tuple[str, str]) -> str:
    """`what` (en, zh) would go to `count` members, more than today's quota has left; `advice`: what to do."""
    return ctx.say(
        f"{what[0]} would go to {count} member(s), more than is left of today's WeCom send quota: "
        f"{quota.used} of {quota.limit} used{_kept(ctx, quota)}, {quota.left} left. {advice[0]}",
        f"{what[1]}要发给 {count} 人，超出今天企业微信的发送额度：已用 {quota.used} / 共 {quota.limit}"
        f"{_kept(ctx, quota)}，只剩 {quota.left}。{advice[1]}")
