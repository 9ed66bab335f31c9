"""What the domain says when it will not do something: a reason for the person, in both languages."""
from __future__ import annotations


class Refusal(Exception):
    """Raised by store operations (claim a lead someone holds, exceed a limit...). The router turns
    it into a "Sorry: …" reply in the asker's language."""

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en, self.zh = en, zh
