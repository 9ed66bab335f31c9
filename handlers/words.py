"""The words for what the store records in English (statuses, event kinds, sources, the notes it
writes itself), in English and Chinese: store values are identifiers, never text a person reads,
so every reply and notice names them through this catalogue (issue 15)."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# Each table: stored value → (English, Chinese).
TASK_STATUSES = {"draft": ("draft", "草稿"), "active": ("active", "进行中"), "ended": ("ended", "已结束")}
LEAD_STATUSES = {"new": ("in the pool", "待领取"), "claimed": ("claimed", "已领取"),
                 "following": ("following up", "跟进中"), "nurturing": ("nurturing", "孵化中"),
                 "won": ("won", "已成交"), "lost": ("lost", "已丢单")}
# An event without a member is the system's; with one, {who} is whom it concerns: the actor, or
# for `assigned` the member given the lead and for `recycled` the one it was taken from.
EVENTS = {"created": ("created", "创建"), "assigned": ("assigned", "分配"), "claimed": ("claimed", "领取"),
          "returned": ("returned", "退回线索池"), "followed": ("followed up", "跟进"), "won": ("won", "成交"),
          "lost": ("lost", "丢单"), "recycled": ("recycled", "收回线索池"), "nurturing": ("nurturing", "转为孵化")}
EVENTS_BY = {"created": ("created by {who}", "{who} 创建"), "assigned": ("assigned to {who}", "分配给 {who}"),
             "claimed": ("claimed by {who}", "{who} 领取"), "returned": ("returned by {who}", "{who} 退回线索池"),
             "followed": ("followed up by {who}", "{who} 跟进"), "won": ("won by {who}", "{who} 成交"),
             "lost": ("lost by {who}", "{who} 丢单"), "recycled": ("recycled from {who}", "从 {who} 收回线索池"),
             "nurturing": ("nurturing by {who}", "{who} 转为孵化")}
CHANNELS = {"link": ("link", "链接"), "poster": ("poster", "海报"), "other": ("other channel", "其他渠道")}
SOURCES = {"import": ("import", "导入"), "api": ("API", "接口"), "demo": ("demo", "演示"),
           **{f"form:{c}": (f"form via {en}", f"{zh}表单") for c, (en, zh) in CHANNELS.items()}}
# Why a lead went to someone, as the store notes it.
REASONS = {"sharer": ("as its sharer", "分享者本人"), "no follow-up": ("no follow-up", "未跟进"),
           "admin": ("an admin", "管理员")}
CONTENT_KINDS = {"link": ("article", "文章"), "file": ("file", "文件"), "image": ("image", "图片"),
                 "video": ("video", "视频"), "script": ("talk script", "话术")}
CONTENT_STATUSES = {"draft": ("draft", "草稿"), "published": ("published", "已发布"), "retired": ("retired", "已下架")}
TABLES = (TASK_STATUSES, LEAD_STATUSES, EVENTS, CHANNELS, SOURCES, REASONS, CONTENT_KINDS, CONTENT_STATUSES)


def word(table: dict[str, tuple[str, str]], value: str, lang: str) -> str:
    """An unknown value (a newer store than this catalogue) is shown as stored rather than hidden."""
    en, zh = table.get(value, (value, value))
    return zh if lang == "zh" else en


def event(kind: str, who: str | None, lang: str) -> str:
    if who is None:
        return word(EVENTS, kind, lang)
    en, zh = EVENTS_BY.get(kind, (f"{kind} · {{who}}", f"{kind} · {{who}}"))
    if lang != "zh":
        return en.format(who=who)
    # Chinese needs no space after a closing full-width bracket: 张伟（星河科技）领取, but Li Na 领取.
    return zh.format(who=who).replace("） ", "）") if who.endswith("）") else zh.format(who=who)


def person(name: str, partner: str, lang: str) -> str:
    """张伟（星河科技） / 张伟 (星河科技): whose company matters when leads move between partners."""
    if not partner:
        return name
    return f"{name}（{partner}）" if lang == "zh" else f"{name} ({partner})"


def _by(who: str, lang: str) -> str:
    return word(REASONS, who, lang)


def event_note(kind: str, note: str, lang: str, partners: dict[int, str] | None = None) -> str:
    """The store's own notes (store/leads.py, store/pool.py, store/assignment.py) in the asker's
    language; what a member typed (a return reason, a follow-up) is theirs and shown as written."""
    zh = lang == "zh"
    if kind == "won":
        try:
            amount = Decimal(note)
        except InvalidOperation:
            return note
        return f"{amount:,.2f} 元" if zh else f"{amount:,.2f}"
    if kind == "created":
        if m := re.fullmatch(r"form via (\w+)", note):
            return word(SOURCES, f"form:{m[1]}", lang)
        if m := re.fullmatch(r"import line (\d+)", note):
            return f"导入第 {m[1]} 行" if zh else f"imported, line {m[1]}"
        return note
    if kind == "assigned":
        lifted = note.endswith(" (protection lifted)")
        core = note.removesuffix(" (protection lifted)")
        tail = ("（解除保护）" if zh else " (protection lifted)") if lifted else ""
        if core == "sharer":
            return _by("sharer", lang)
        if m := re.fullmatch(r"rule #(\d+)", core):
            return f"按分配规则 #{m[1]}" if zh else f"by rule #{m[1]}"
        if m := re.fullmatch(r"by (\w+)", core):
            return (f"由{_by(m[1], lang)}分配" if zh else f"by {_by(m[1], lang)}") + tail
        if m := re.fullmatch(r"to (?:partner pool (\d+)|public pool) by (\w+)", core):
            where_en, where_zh = "the public pool", "公共线索池"
            if m[1]:
                name = (partners or {}).get(int(m[1]), "")
                where_en, where_zh = f"{name or 'a partner'}'s pool", f"{name or '伙伴'}的线索池"
            return (f"由{_by(m[2], lang)}移入{where_zh}" if zh else f"to {where_en} by {_by(m[2], lang)}") + tail
        return note
    if kind == "returned" and (m := re.fullmatch(r"moved by (\w+)", note)):
        return f"由{_by(m[1], lang)}移出" if zh else f"moved by {_by(m[1], lang)}"
    if kind == "recycled" and note == "no follow-up":
        return _by(note, lang)
    if kind == "nurturing" and (m := re.fullmatch(r"next contact (\d{4}-\d{2}-\d{2})(?:: (.*))?", note, re.S)):
        said = f"：{m[2]}" if zh and m[2] else f": {m[2]}" if m[2] else ""
        return (f"下次联系 {m[1]}" if zh else f"next contact {m[1]}") + said
    return note


def pool_partner_ids(notes: list[str]) -> set[int]:
    """Partners named by id in the store's notes, for their names to be looked up once."""
    return {int(m[1]) for note in notes for m in re.finditer(r"partner pool (\d+)", note)}
