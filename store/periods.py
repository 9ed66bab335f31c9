"""Periods the figures are counted for: local days in `[server] timezone`, both ends included, parsed
from what people write (today, week, month, 30d, a day, FROM..TO)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS = 366
# Days a period may name. Wider ones are typos, and at the ends of Python's calendar (0001-01-01,
# 9999-12-31) the period's start or end moment does not exist (OverflowError: a 500, an apology).
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2100, 12, 31)


class BadPeriod(ValueError):
    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en, self.zh = en, zh


@dataclass(frozen=True)
class Period:
    first_day: date  # local days, both included
    last_day: date
    timezone: str
    label: str

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(0), tzinfo=ZoneInfo(self.timezone))

    @property
    def end(self) -> datetime:  # exclusive
        return datetime.combine(self.last_day + timedelta(days=1), time(0), tzinfo=ZoneInfo(self.timezone))

    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=i) for i in range((self.last_day - self.first_day).days + 1)]


PERIOD_WORDS = {"today": "today", "今天": "today", "今日": "today", "yesterday": "yesterday", "昨天": "yesterday",
                "week": "week", "本周": "week", "month": "month", "本月": "month", "30d": "30d", "近30天": "30d"}
_RANGE = re.compile(r"^(\d{4}-\d{1,2}-\d{1,2})(?:\.\.|~|～|至|到|—|–)(\d{4}-\d{1,2}-\d{1,2})$")


def is_period_word(word: str) -> bool:
    return word.lower() in PERIOD_WORDS or bool(_RANGE.match(word)) or bool(re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", word))


def parse_period(word: str, zone: str, today: date) -> Period:
    """today / week (since Monday) / month (since the 1st) / 30d / a day / FROM..TO, in local days."""
    kind = PERIOD_WORDS.get(word.lower())
    if kind == "today":
        return Period(today, today, zone, today.isoformat())
    if kind == "yesterday":
        day = today - timedelta(days=1)
        return Period(day, day, zone, day.isoformat())
    if kind == "week":
        return Period(today - timedelta(days=today.weekday()), today, zone, f"{today - timedelta(days=today.weekday())} – {today}")
    if kind == "month":
        return Period(today.replace(day=1), today, zone, f"{today.replace(day=1)} – {today}")
    if kind == "30d":
        return Period(today - timedelta(days=29), today, zone, f"{today - timedelta(days=29)} – {today}")
    match = _RANGE.match(word)
    parts = match.groups() if match else (word, word)
    try:
        first, last = (date.fromisoformat("-".join(p.zfill(2) for p in part.split("-"))) for part in parts)
    except ValueError:
        raise BadPeriod(f"“{word[:30]}” is not a period: use today, week, month or 2026-11-01..2026-11-15",
                        f"“{word[:30]}”不是时间段：请用 今天、本周、本月 或 2026-11-01..2026-11-15") from None
    if first < EARLIEST_DAY or last > LATEST_DAY:
        raise BadPeriod(f"a period must lie between {EARLIEST_DAY} and {LATEST_DAY}",
                        f"时间段须在 {EARLIEST_DAY} 至 {LATEST_DAY} 之间")
    if last < first:
        raise BadPeriod("the period ends before it starts", "时间段的结束早于开始")
    if (last - first).days >= MAX_DAYS:
        raise BadPeriod(f"a period can be at most {MAX_DAYS} days", f"时间段最长 {MAX_DAYS} 天")
    return Period(first, last, zone, f"{first} – {last}" if first != last else first.isoformat())
