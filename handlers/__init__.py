"""The command table: every chat command, its Chinese name, who may use it and its handler.

One list in one place, so a reader finds any command's code in one hop. Only commands that
really work are listed; help shows exactly these.
"""
from __future__ import annotations

from bot.router import EVERY_ROLE, Command, CommandTable
from handlers import help as help_

COMMANDS: list[Command] = [
    Command("help", "帮助", roles=EVERY_ROLE, handler=help_.show_help, aliases=("?",),
            help_en="help — what you can do here", help_zh="帮助 — 查看可用命令"),
]


def command_table() -> CommandTable:
    return CommandTable(COMMANDS)
