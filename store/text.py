"""Text people type (names, notes, reasons), made safe to store and show again."""
from __future__ import annotations

import re

# Bidi controls (embeddings, overrides, isolates, marks) re-order what follows them: a name with
# U+202E reads backwards in every list, card and export it reaches. Line and paragraph separators
# break one-line replies and CSV cells in some viewers. Neither belongs in a name or a note.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SEPARATORS = re.compile("[\u2028\u2029]")


def clean_text(text: str) -> str:
    """Without bidi controls; line/paragraph separators become spaces (so words stay apart); trimmed."""
    return _SEPARATORS.sub(" ", _BIDI.sub("", text)).strip()
