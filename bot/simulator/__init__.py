"""A local WeCom and WeChat Official Account: the API subsets the bot uses, signed and encrypted
callbacks, and the sandbox chat page."""
from bot.simulator.server import WeComSimulator
from bot.simulator.wechat import WeChatSimulator

__all__ = ["WeComSimulator", "WeChatSimulator"]
