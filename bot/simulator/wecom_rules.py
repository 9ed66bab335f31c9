"""What WeCom's message/send accepts, as the simulator checks it: message types, text sizes, media ids
and news articles, with WeCom's error codes."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.simulator.common import _error

MAX_CONTENT_BYTES = 2048
# message/send news: 1-8 articles, title <= 128 bytes, description <= 512, url <= 2,048.
MAX_ARTICLES, MAX_TITLE_BYTES, MAX_DESCRIPTION_BYTES, MAX_URL_BYTES = 8, 128, 512, 2048


def check_content(msgtype: Any, body: dict[str, Any], media_ok: Callable[[Any], bool]) -> web.Response | None:
    part = body.get(msgtype) if isinstance(msgtype, str) else None
    if msgtype not in ("text", "markdown", "image", "file", "textcard", "template_card", "news"):
        return _error(40008, "invalid message type")
    if not isinstance(part, dict):
        return _error(41011, f"missing {msgtype}")
    if msgtype in ("text", "markdown"):
        content = part.get("content")
        if not isinstance(content, str) or not content:
            return _error(44004, "empty content")
        if len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
            return _error(45002, "content size out of limit")
    if msgtype in ("image", "file") and not media_ok(part.get("media_id")):
        return _error(40007, "invalid media_id")
    if msgtype == "news":
        return _check_news(part)
    if msgtype == "template_card" and part.get("card_type") not in (
            "text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"):
        return _error(40058, "invalid card_type")
    return None


def _check_news(part: dict[str, Any]) -> web.Response | None:
    articles = part.get("articles")
    if not isinstance(articles, list) or not articles:
        return _error(44003, "empty news")
    if len(articles) > MAX_ARTICLES:
        return _error(45008, "article size out of limit")
    for article in articles:
        if not isinstance(article, dict) or not isinstance(article.get("title"), str) or not article["title"]:
            return _error(44003, "empty news")
        if len(article["title"].encode("utf-8")) > MAX_TITLE_BYTES:
            return _error(45003, "title size out of limit")
        if len(str(article.get("description") or "").encode("utf-8")) > MAX_DESCRIPTION_BYTES:
            return _error(45004, "description size out of limit")
        for key in ("url", "picurl"):
            if len(str(article.get(key) or "").encode("utf-8")) > MAX_URL_BYTES:
                return _error(45005 if key == "url" else 45006, f"{key} size out of limit")
    return None


class CallWindows:
    """WeCom's per-company limits on one API: a call is taken if every (calls, window seconds)
    sliding window has room."""

    def __init__(self, limits: list[tuple[int, float]]) -> None:
        self.limits = limits
        self._calls: deque[float] = deque()

    def take(self, now: float) -> bool:
        longest = max(window for _, window in self.limits)
        while self._calls and self._calls[0] <= now - longest:
            self._calls.popleft()
        if any(sum(1 for t in self._calls if t > now - window) >= limit for limit, window in self.limits):
            return False
        self._calls.append(now)
        return True
