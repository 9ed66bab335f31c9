"""Text people type (names, notes, reasons), made safe to store and show again."""
from __future__ import annotations

import re
import unicodedata

# Bidi controls (embeddings, overrides, isolates, marks) re-order what follows them: a name with
# U+202E reads backwards in every list, card and export it reaches. Line and paragraph separators
# break one-line replies and CSV cells in some viewers. Neither belongs in a name or a note.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SEPARATORS = re.compile("[\u2028\u2029]")


def clean_text(text: str) -> str:
    """Without bidi controls; line/paragraph separators become spaces (so words stay apart); trimmed."""
    return _SEPARATORS.sub(" ", _BIDI.sub("", text)).strip()


def ascii_digits(text: str) -> str:
    """NFKC folds full-width forms (１３８, ＃, ＋, －); digits of other scripts (Arabic-Indic ١٣٨) survive
    NFKC, so every Unicode decimal digit then becomes its ASCII digit."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


def whole_number(text: str, max_digits: int) -> int | None:
    """`text` as a whole number if it is 1 to `max_digits` ASCII digits, else None. ASCII only:
    "¹".isdigit() is True but int() refuses it, and int() would take "١٢" or " 12" where an id,
    a timestamp or a path must be exactly 12. Callers say what was wrong in their own way."""
    if not (text.isascii() and text.isdigit()) or len(text) > max_digits:
        return None
    return int(text)
