"""flags / 风控, clear / 放行 and reject / 驳回: admins review what the fraud rules held back."""
from __future__ import annotations

from handlers.replies import Text
from handlers.context import Context
from store import fraud


async def list_flags(ctx: Context, _args: None) -> Text:
    flags = await fraud.open_flags(ctx.session)
    if not flags:
        return Text(ctx.say("Nothing is held back: no open flags.", "没有待处理的风控记录。"))
    lines = [ctx.say("Held back until you decide (clear N counts them, reject N keeps them out):",
                     "以下记录暂不计入统计、等级和积分（放行 N 恢复计入，驳回 N 永久剔除）：")]
    for flag in flags:
        what_en, what_zh = fraud.RULE_NAMES.get(flag.rule, (flag.rule, flag.rule))
        unit = ctx.say("click(s)" if flag.kind == "click" else "lead(s)", "次点击" if flag.kind == "click" else "条线索")
        lines.append(f"#{flag.id} {ctx.say(what_en, what_zh)} · {flag.count} {unit}\n  {flag.detail}")
    return Text("\n".join(lines))


async def clear(ctx: Context, flag_id: int) -> Text:
    flag = await fraud.decide(ctx.session, flag_id, "cleared", ctx.member, ctx.config.server.timezone)
    return Text(ctx.say(f"Flag #{flag.id} cleared: its {flag.count} {flag.kind}(s) count again.",
                        f"风控记录 #{flag.id} 已放行，{flag.count} 条记录恢复计入。"))


async def reject(ctx: Context, flag_id: int) -> Text:
    flag = await fraud.decide(ctx.session, flag_id, "rejected", ctx.member, ctx.config.server.timezone)
    return Text(ctx.say(f"Flag #{flag.id} rejected: its {flag.count} {flag.kind}(s) stay out of every figure.",
                        f"风控记录 #{flag.id} 已驳回，{flag.count} 条记录永久不计入。"))
