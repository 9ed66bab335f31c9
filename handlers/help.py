"""help / 帮助: the commands this member's role may use, one example each."""
from __future__ import annotations

from handlers.replies import Text
from handlers.context import ROLE_NAMES, Context


async def show_help(ctx: Context, _args: None) -> Text:
    commands = ctx.commands.for_role(ctx.member.role)
    role_en, role_zh = ROLE_NAMES[ctx.member.role]
    if ctx.lang == "zh":
        lines = [f"{ctx.member.name}，您好（{role_zh}）。可用命令："]
        lines += [f"• {c.help_zh}" for c in commands]
    else:
        lines = [f"Hi {ctx.member.name} ({role_en}). Commands you can use:"]
        lines += [f"• {c.help_en}" for c in commands]
    return Text("\n".join(lines))
