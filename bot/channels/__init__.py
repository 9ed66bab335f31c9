"""Channels: adapters between a chat platform and the normalized Incoming / Reply types (base.py
says what a channel provides). A new channel is a module here and one line below."""
from __future__ import annotations

from bot.channels.base import Channel
from bot.channels.wechat import WeChatChannel
from bot.channels.wecom import WeComChannel

CHANNELS: tuple[Channel, ...] = (WeComChannel(), WeChatChannel())
