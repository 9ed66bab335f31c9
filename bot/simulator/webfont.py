"""The sandbox page's web font, so Chinese shows on a machine without CJK fonts (a fresh Linux box
or container showed an empty box for every character).

Two faces of the bundled Noto Sans SC (assets/fonts), listed after the system fonts, so a machine
that has PingFang, YaHei or Noto CJK never downloads them:
- a WOFF subset of the characters the page and the bot's own texts use (every non-ASCII character
  in bot/, handlers/, store/ and assets/pages/), about 120 KB. fontTools builds it (2-3 s) in a
  thread on the first request and keeps it in memory and in the temp directory, keyed by the font
  and the characters, so later starts and processes reuse it;
- the whole bundled subset (GB 2312's 6,763 hanzi, 1.9 MB, served as is) for what people type that
  the bot never says, which a browser fetches only when a character is missing from the first.
WOFF, not WOFF2: WOFF2 needs the brotli module, an extra dependency for a page served from localhost.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from bot.config import ASSETS

log = logging.getLogger(__name__)

SOURCE_FONT = ASSETS / "fonts" / "NotoSansSC-Subset-Regular.otf"
CODE_ROOT = ASSETS.parent
TEXT_SOURCES = ("bot/**/*.py", "handlers/**/*.py", "store/**/*.py", "assets/pages/*.html")


def used_characters() -> str:
    """Printable ASCII and every non-ASCII character written in the code's texts and pages, sorted."""
    chars = {chr(c) for c in range(0x20, 0x7F)}
    for pattern in TEXT_SOURCES:
        for path in CODE_ROOT.glob(pattern):
            chars.update(c for c in path.read_text(encoding="utf-8") if ord(c) > 0x7F and c.isprintable())
    return "".join(sorted(chars))


def _build(chars: str) -> bytes:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.layout_features, options.name_IDs, options.notdef_outline = ["*"], ["*"], True
    font = TTFont(str(SOURCE_FONT))
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    out = io.BytesIO()
    font.flavor = "woff"
    font.save(out)
    return out.getvalue()


@lru_cache(maxsize=1)
def subset_woff() -> bytes:
    """The page's subset: from the temp directory when an earlier run built the same one, else built."""
    chars = used_characters()
    stat = SOURCE_FONT.stat()
    key = hashlib.sha256(f"woff:{SOURCE_FONT.name}:{stat.st_size}:{stat.st_mtime_ns}:{chars}".encode()).hexdigest()[:16]
    cached = Path(tempfile.gettempdir()) / f"partnerbot-sandbox-font-{key}.woff"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    data = _build(chars)
    try:  # written whole under a temporary name, then renamed: a reader never sees half a font
        with tempfile.NamedTemporaryFile(dir=cached.parent, prefix=cached.name, delete=False) as part:
            part.write(data)
        os.replace(part.name, cached)
    except OSError as err:  # no writable temp directory: built again next time
        log.info("sandbox font not cached (%s)", err)
    return data


_lock = threading.Lock()


def page_font() -> bytes:
    """subset_woff, built once however many requests ask at once (for a thread: it may take seconds)."""
    with _lock:
        return subset_woff()
