"""CSV for spreadsheets. Every export is written here, so no exported cell can run as a formula."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

# What makes Excel, LibreOffice and Google Sheets read a cell as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text cell starting like a formula gets a leading single quote, so it is shown as text: a
    task titled `@SUM(1+1)*cmd` or a member named `=HYPERLINK(…)` cannot act in the admin's
    spreadsheet. Numbers (int, Decimal, float) are not text and stay as they are, so a points
    reversal's -5 is still a number; exports therefore keep amounts as numbers, not strings."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(columns: list[str], rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({key: neutralise(value) for key, value in row.items()} for row in rows)
    return out.getvalue()
