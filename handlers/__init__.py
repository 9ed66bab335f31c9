"""The command table: every chat command, its Chinese name, who may use it and its handler.

One list in one place, so a reader finds any command's code in one hop. Only commands that
really work are listed; help shows exactly these.
"""
from __future__ import annotations

from handlers.context import EVERY_ROLE, FOLLOWER, GUEST, Command, CommandTable, optional_id, parse_id
from handlers import help as help_
from handlers import bindings, flags, leads, links, partners, posters, stats, tasks

PARTNER_ONLY = frozenset({"partner"})

COMMANDS: list[Command] = [
    Command("help", "帮助", roles=EVERY_ROLE, handler=help_.show_help, aliases=("?",),
            help_en="help — what you can do here", help_zh="帮助 — 查看可用命令"),
    # `任务` alone lists tasks and `任务 12` shows one (DESIGN §2), so one command serves both forms.
    Command("tasks", "任务", roles=EVERY_ROLE, handler=tasks.tasks_or_task, parse=optional_id, aliases=("task",),
            help_en="tasks — your open tasks · task 12 — details of task #12",
            help_zh="任务 — 我的任务 · 任务 12 — 查看任务 #12"),
    Command("poster", "海报", roles=PARTNER_ONLY, handler=posters.my_poster, parse=optional_id,
            help_en="poster 12 — your own poster for task #12 (no number: your newest task)",
            help_zh="海报 12 — 获取任务 #12 的专属海报（不写编号：最新任务）"),
    Command("link", "链接", roles=PARTNER_ONLY, handler=links.my_link, parse=optional_id,
            help_en="link 12 — your own tracked link for task #12 (no number: your newest task)",
            help_zh="链接 12 — 获取任务 #12 的专属链接（不写编号：最新任务）"),
    Command("me", "我的", roles=PARTNER_ONLY, handler=stats.my_figures,
            help_en="me — your last 30 days: shares, clicks, leads, wins and rank",
            help_zh="我的 — 近 30 天的分享、点击、线索、成交和排名"),
    Command("points", "积分", roles=PARTNER_ONLY, handler=stats.my_points,
            help_en="points — your points and commission this month", help_zh="积分 — 我本月的积分和佣金"),
    Command("pool", "线索池", roles=PARTNER_ONLY, handler=leads.show_pool, parse=leads.parse_words,
            help_en="pool [region or industry words] — leads you can claim (phones masked)",
            help_zh="线索池 [地区/行业词] — 可领取的线索（手机号隐藏）"),
    Command("claim", "领取", roles=PARTNER_ONLY, handler=leads.claim_lead, parse=parse_id,
            help_en="claim 12 — take lead #12 from the pool", help_zh="领取 12 — 从线索池领取 #12"),
    Command("return", "退回", roles=PARTNER_ONLY, handler=leads.return_lead, parse=leads.parse_lead_and_text,
            help_en="return 12 reason — give lead #12 back to the pool", help_zh="退回 12 原因 — 把线索 #12 退回线索池"),
    Command("leads", "我的线索", roles=PARTNER_ONLY, handler=leads.my_leads,
            help_en="leads — the leads you hold, with full contact", help_zh="我的线索 — 我持有的线索（完整联系方式）"),
    Command("follow", "跟进", roles=PARTNER_ONLY, handler=leads.follow_lead, parse=leads.parse_lead_and_text,
            help_en="follow 12 note — log a follow-up on lead #12", help_zh="跟进 12 内容 — 记录线索 #12 的跟进"),
    Command("won", "成交", roles=PARTNER_ONLY, handler=leads.won_lead, parse=leads.parse_won,
            help_en="won 12 50000 — lead #12 won with an order of 50,000", help_zh="成交 12 50000 — 线索 #12 成交 5 万元"),
    Command("lost", "丢单", roles=PARTNER_ONLY, handler=leads.lost_lead, parse=leads.parse_lead_and_text,
            help_en="lost 12 reason — lead #12 lost", help_zh="丢单 12 原因 — 线索 #12 丢单"),
    Command("nurture", "孵化", roles=PARTNER_ONLY, handler=leads.nurture_lead, parse=leads.parse_nurture,
            help_en="nurture 12 2026-12-20 [note] — not ready yet: remind me then",
            help_zh="孵化 12 2026-12-20 [备注] — 暂不成熟：到期提醒我联系"),
    Command("lead", "线索", roles=frozenset({"admin"}), handler=leads.lead_history, parse=parse_id,
            help_en="lead 12 — lead #12 with its full history", help_zh="线索 12 — 线索 #12 的完整记录"),
    Command("newtask", "新任务", roles=tasks.STAFF, handler=tasks.new_task, parse=tasks.parse_newtask,
            help_en="newtask Title | https://… [| template] [| 2026-12-31] — create a task",
            help_zh="新任务 标题 | https://… [| 模板] [| 2026-12-31] — 创建任务"),
    Command("broadcast", "下发", roles=tasks.STAFF, handler=tasks.broadcast, parse=tasks.parse_broadcast,
            help_en="broadcast 12 partner:NAME — send task #12 (all, partner:, region:, tag:, user:)",
            help_zh="下发 12 伙伴:名称 — 下发任务 #12（全部、伙伴:、区域:、标签:、用户:）"),
    Command("report", "统计", roles=EVERY_ROLE, handler=stats.report, parse=stats.parse_report,
            help_en="report [today|week|month|2026-11-01..2026-11-15] [task 12] [member ID] [partner NAME] — funnel, leaders, chart",
            help_zh="统计 [今天|本周|本月|2026-11-01..2026-11-15] [任务 12] [成员 账号] [伙伴 名称] — 漏斗、排行和图表"),
    Command("roi", "归因", roles=tasks.STAFF, handler=stats.roi, parse=stats.parse_roi,
            help_en="roi [first|last|linear|u] [month] — revenue credited to tasks and partners",
            help_zh="归因 [首次|末次|线性|U型] [本月] — 成交额按任务和伙伴归因"),
    Command("flags", "风控", roles=frozenset({"admin"}), handler=flags.list_flags,
            help_en="flags — suspicious clicks and leads held out of the figures",
            help_zh="风控 — 暂不计入的可疑点击和线索"),
    Command("clear", "放行", roles=frozenset({"admin"}), handler=flags.clear, parse=parse_id,
            help_en="clear 3 — flag #3 was fine: count its clicks or leads again", help_zh="放行 3 — 风控记录 #3 正常，恢复计入"),
    Command("reject", "驳回", roles=frozenset({"admin"}), handler=flags.reject, parse=parse_id,
            help_en="reject 3 — flag #3 was fraud: keep it out for good", help_zh="驳回 3 — 风控记录 #3 为作弊，永久剔除"),
    Command("newpartner", "新伙伴", roles=frozenset({"admin"}), handler=partners.new_partner,
            parse=partners.parse_newpartner,
            help_en="newpartner Name | region | industry;industry | silver — add a partner company",
            help_zh="新伙伴 名称 | 区域 | 行业;行业 | 银牌 — 新增合作伙伴"),
    Command("invite", "邀请", roles=frozenset({"admin"}), handler=partners.invite, parse=partners.parse_invite,
            help_en="invite NAME [days] [places] — an invite code and QR poster for a partner's staff",
            help_zh="邀请 名称 [天数] [名额] — 生成伙伴员工的邀请码和二维码海报"),
    Command("revoke", "撤销邀请", roles=frozenset({"admin"}), handler=partners.revoke, parse=partners.parse_code,
            help_en="revoke CODE — stop an invite code working", help_zh="撤销邀请 邀请码 — 让邀请码失效"),
    Command("join", "加入", roles=frozenset({GUEST, "partner"}), handler=partners.join, parse=partners.parse_code,
            help_en="join CODE — join a partner with its invite code", help_zh="加入 邀请码 — 用邀请码加入伙伴"),
    Command("bind", "绑定", roles=EVERY_ROLE | {FOLLOWER}, handler=bindings.bind, parse=bindings.parse_code,
            help_en="bind CODE — (on the WeChat official account) link this WeChat to you",
            help_zh="绑定 绑定码 — （在微信公众号）把此微信绑定到您的账号"),
    Command("bindcode", "绑定码", roles=EVERY_ROLE, handler=bindings.binding_code, parse=bindings.parse_userid,
            help_en="bindcode — a code to use the bot from WeChat too (admins: bindcode USERID for someone else)",
            help_zh="绑定码 — 获取在微信公众号使用的绑定码（管理员：绑定码 账号 为他人生成）"),
    Command("unbind", "解绑", roles=EVERY_ROLE, handler=bindings.unbind,
            help_en="unbind — unlink your WeChat", help_zh="解绑 — 解除微信绑定"),
    Command("notify", "通知", roles=EVERY_ROLE, handler=bindings.notify, parse=bindings.parse_channel,
            help_en="notify [wechat|wecom] — where your tasks and notices go",
            help_zh="通知 [微信|企业微信] — 任务和通知发到哪里"),
    Command("remind", "催办", roles=tasks.STAFF, handler=tasks.remind, parse=parse_id,
            help_en="remind 12 — remind who has not shared task #12", help_zh="催办 12 — 提醒未分享任务 #12 的成员"),
]


def command_table() -> CommandTable:
    return CommandTable(COMMANDS)
