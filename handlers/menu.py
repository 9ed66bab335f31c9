"""The Official Account's custom menu (installed by `partnerbot wechat menu`): what its buttons say, and
as each click button's key the command line it runs, like a WeCom card button. WeChat allows 3
top-level buttons of up to 5."""
from __future__ import annotations

from typing import Any

MENU: dict[str, Any] = {"button": [
    {"type": "click", "name": "任务", "key": "任务"},
    {"type": "click", "name": "线索池", "key": "线索池"},
    {"name": "我的", "sub_button": [
        {"type": "click", "name": "我的海报", "key": "海报"},
        {"type": "click", "name": "我的链接", "key": "链接"},
        {"type": "click", "name": "我的数据", "key": "我的"},
        {"type": "click", "name": "我的线索", "key": "我的线索"},
        {"type": "click", "name": "帮助", "key": "帮助"},
    ]},
]}


def menu_commands(menu: dict[str, Any] = MENU) -> list[str]:
    """Every command line the menu's buttons run."""
    buttons = [b for top in menu["button"] for b in (top.get("sub_button") or [top])]
    return [b["key"] for b in buttons if b.get("type") == "click"]
