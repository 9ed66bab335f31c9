"""A poster template's layout.json, parsed: where the QR code, the avatar and each text box go
(keys documented in assets/posters/README.md), and what a member's poster asks for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WEIGHTS = ("regular", "bold")  # the bundled font's weights
VALUES = ("member_name", "partner_name", "task_title")  # the request's fields a layout places


@dataclass(frozen=True)
class PosterRequest:
    template: str
    qr_url: str
    member_name: str
    partner_name: str
    task_title: str


@dataclass(frozen=True)
class TextSpec:  # a text box: top-left x,y; max_width wide; max_lines lines of size px at most
    x: int
    y: int
    max_width: int
    size: int
    min_size: int = 0  # shrink down to this before ellipsizing; 0 = never shrink
    max_lines: int = 1
    weight: str = "regular"  # regular | bold
    color: str = "#000000"
    align: str = "left"  # left | center | right, within [x, x + max_width]
    valign: str = "top"  # top | middle | bottom, within max_lines * size * line_height
    line_height: float = 1.3
    text: str = ""  # fixed text (a footer, a label), or the default for a request field left empty

    def __post_init__(self) -> None:
        if self.weight not in WEIGHTS or self.align not in ("left", "center", "right") or self.max_lines < 1 \
                or self.valign not in ("top", "middle", "bottom") or not 0 <= self.min_size <= self.size:
            raise ValueError(f"bad text box {self}")


@dataclass(frozen=True)
class QRSpec:
    x: int
    y: int
    size: int
    fg: str = "#000000"
    bg: str = "#ffffff"
    quiet_zone: int = 4  # modules of margin, inside `size`
    logo: str = ""  # an image file in the template folder, drawn in the middle
    logo_ratio: float = 0.22  # logo width / code width; level H restores 30 % of the code


@dataclass(frozen=True)
class AvatarSpec:  # a circle with the member's initials (like WeCom: a Chinese name's last two characters)
    x: int
    y: int
    size: int
    fill: str = "#3a6df0"
    color: str = "#ffffff"
    ring: str = "#ffffff"
    ring_width: int = 0


@dataclass(frozen=True)
class Layout:
    qr: QRSpec
    avatar: AvatarSpec | None
    texts: dict[str, TextSpec]  # member_name, partner_name, task_title show the request's; others their `text`

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Layout:
        texts = {k: TextSpec(**v) for k, v in data.items() if k not in ("qr", "avatar") and not k.startswith("$")}
        if bad := [k for k, v in texts.items() if k not in VALUES and not v.text]:
            raise ValueError(f"text boxes {bad} have no text (the request fills only {', '.join(VALUES)})")
        return cls(QRSpec(**data["qr"]), AvatarSpec(**data["avatar"]) if "avatar" in data else None, texts)
