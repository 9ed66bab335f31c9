"""Benchmark: poster rendering (1080x1920) with bot.render.posters, cold (a cache miss: QR code, avatar, fitted
CJK text, PNG encode, atomic write) and cached (a hit: stat the template, hash the key, find the file),
against a bare Pillow baseline measured in the same run: open the template's background.png, paste a
ready QR image of the same size, encode the PNG with the renderer's settings (into memory).

    python bench/poster.py [--runs 20] [--template classic]

Prints medians (and p90) per template and the ratios to the baseline.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from bot.render.posters import Layout, PosterRenderer, PosterRequest, qr_image  # noqa: E402
from common import summary  # noqa: E402

TEMPLATES = REPO / "assets" / "posters"
TITLE = "2025 云上增长峰会 · 企业数字化转型实战训练营限时免费报名"


def timed(fn: Callable[[int], object], runs: int) -> list[float]:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return times


def ms(times: list[float]) -> str:
    p90 = sorted(times)[int(0.9 * (len(times) - 1))]
    return f"median {statistics.median(times) * 1000:7.2f} ms   p90 {p90 * 1000:7.2f} ms"


def request(template: str, i: int) -> PosterRequest:
    """Member i's poster: a new i is a cache miss."""
    url = f"https://partner.example.com/t/m{i:08d}xYz"
    return PosterRequest(template, url, f"王子涵{i}", "杭州云栖信息科技有限公司", TITLE)


def bench_template(renderer: PosterRenderer, template: str, runs: int) -> float:
    """Prints the figures; returns the baseline's median (s)."""
    layout = Layout.parse(json.loads((TEMPLATES / template / "layout.json").read_text(encoding="utf-8")))
    renderer.render(request(template, -2))  # the template decoded and memoised, as in a running bot
    cold = timed(lambda i: renderer.render(request(template, i)), runs)
    size = renderer.render(request(template, 0)).stat().st_size
    cached = timed(lambda i: renderer.render(request(template, 0)), runs)
    qr = qr_image(request(template, 0).qr_url, layout.qr)

    def bare(i: int) -> None:
        with Image.open(TEMPLATES / template / "background.png") as background:
            poster = background.convert("RGB")
        poster.paste(qr, (layout.qr.x, layout.qr.y))
        poster.save(io.BytesIO(), "PNG", optimize=False, compress_level=3)  # the settings of bot/render/posters.py

    baseline = timed(bare, runs)
    base = statistics.median(baseline)
    print(f"  {template}:")
    print(f"    cold render (cache miss)     {ms(cold)}   ratio to baseline {statistics.median(cold) / base:6.2f}")
    print(f"    cached (cache hit)           {ms(cached)}   ratio to baseline {statistics.median(cached) / base:6.3f}")
    print(f"    baseline open-paste-encode   {ms(baseline)}")
    summary(f"poster {template} (cold)", statistics.median(cold) * 1000, "ms", base * 1000, "ms open-paste-encode",
            statistics.median(cold) / base)
    print(f"    poster PNG                   {size / 1024:7.0f} KiB (WeCom takes images up to 10 MB)")
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--template", action="append", help="a template (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        renderer = PosterRenderer(TEMPLATES, Path(cache))
        templates = args.template or renderer.templates()
        print(f"poster benchmark: 1080x1920, {args.runs} runs each, templates {', '.join(templates)}")
        start = time.perf_counter()
        renderer.render(request(templates[0], -1))
        print(f"  first render of the process (loads fonts, template): {(time.perf_counter() - start) * 1000:.0f} ms")
        for template in templates:
            bench_template(renderer, template, args.runs)


if __name__ == "__main__":
    main()
