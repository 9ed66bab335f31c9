"""A local WeCom: the API subset the bot uses, encrypted callbacks, and the sandbox chat page."""
from bot.simulator.server import WeComSimulator

__all__ = ["WeComSimulator"]
