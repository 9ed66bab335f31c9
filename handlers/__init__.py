"""The command table: every chat command, its Chinese name, who may use it and its handler.

One list in one place, so a reader finds any command's code in one hop. Only commands that
really work are listed; help shows exactly these.
"""
from __future__ import annotations

from bot.router import EVERY_ROLE, Command, CommandTable, optional_id, parse_id
from handlers import help as help_
from handlers import links, posters, tasks

COMMANDS: list[Command] = [
    Command("help", "帮助", roles=EVERY_ROLE, handler=help_.show_help, aliases=("?",),
            help_en="help — what you can do here", help_zh="帮助 — 查看可用命令"),
    # `任务` alone lists tasks and `任务 12` shows one (DESIGN §2), so one command serves both forms.
    Command("tasks", "任务", roles=EVERY_ROLE, handler=tasks.tasks_or_task, parse=optional_id, aliases=("task",),
            help_en="tasks — your open tasks · task 12 — details of task #12",
            help_zh="任务 — 我的任务 · 任务 12 — 查看任务 #12"),
    Command("poster", "海报", roles=frozenset({"partner"}), handler=posters.my_poster, parse=parse_id,
            help_en="poster 12 — your own poster for task #12", help_zh="海报 12 — 获取任务 #12 的专属海报"),
    Command("link", "链接", roles=frozenset({"partner"}), handler=links.my_link, parse=parse_id,
            help_en="link 12 — your own tracked link for task #12", help_zh="链接 12 — 获取任务 #12 的专属链接"),
    Command("me", "我的", roles=frozenset({"partner"}), handler=links.my_figures,
            help_en="me — your shares, clicks and rank", help_zh="我的 — 我的分享、点击和排名"),
    Command("newtask", "新任务", roles=tasks.STAFF, handler=tasks.new_task, parse=tasks.parse_newtask,
            help_en="newtask Title | https://… [| template] [| 2026-12-31] — create a task",
            help_zh="新任务 标题 | https://… [| 模板] [| 2026-12-31] — 创建任务"),
    Command("broadcast", "下发", roles=tasks.STAFF, handler=tasks.broadcast, parse=tasks.parse_broadcast,
            help_en="broadcast 12 partner:NAME — send task #12 (all, partner:, region:, tag:, user:)",
            help_zh="下发 12 伙伴:名称 — 下发任务 #12（全部、伙伴:、区域:、标签:、用户:）"),
    Command("remind", "催办", roles=tasks.STAFF, handler=tasks.remind, parse=parse_id,
            help_en="remind 12 — remind who has not shared task #12", help_zh="催办 12 — 提醒未分享任务 #12 的成员"),
]


def command_table() -> CommandTable:
    return CommandTable(COMMANDS)
