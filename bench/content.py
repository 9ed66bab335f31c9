"""Benchmark: image content copies (issue 16). N partners each take their copy of one content image: the
stored picture (a 1080x1440 JPEG photo, as a marketer would upload) with the partner's own QR code stamped
by bot/render/posters.py (decode, scale, QR, JPEG encode, atomic write into the cache), each a cache miss;
then the cached copy (a hit: hash the key, find the file). Against the bare poster baseline measured in the
same run (bench/poster.py's: open the classic template's background.png, paste a ready QR image, encode
the PNG into memory), and the poster's own cold render for comparison.

    python bench/content.py [--partners 1000] [--runs 20]

Prints copies/s, medians (and p90) and the ratios to the baseline.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from bot.render.posters import PosterRenderer  # noqa: E402
from common import summary  # noqa: E402
from poster import TEMPLATES, bench_template, ms, timed  # noqa: E402


def photo(size: tuple[int, int] = (1080, 1440)) -> bytes:
    """A photo-like JPEG: gradients, shapes and noise (JPEG work like a real picture's)."""
    base = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(base)
    for i in range(40):
        x, y = (i * 97) % size[0], (i * 173) % size[1]
        draw.ellipse((x, y, x + 160, y + 120), fill=((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    noise = Image.effect_noise(size, 40).convert("RGB")
    picture = Image.blend(base, noise, 0.25).filter(ImageFilter.SMOOTH)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=90)
    return out.getvalue()


def url(i: int) -> str:
    return f"https://partner.example.com/t/c{i:08d}xYz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20, help="runs of the baseline and of the cached copy")
    args = parser.parse_args()
    source = photo()
    sha = hashlib.sha256(source).hexdigest()
    with tempfile.TemporaryDirectory() as cache:
        renderer = PosterRenderer(TEMPLATES, Path(cache))
        print(f"content image benchmark: a {len(source) / 1024:.0f} KiB 1080x1440 JPEG, {args.partners} partners")
        renderer.stamp(source, sha, url(-1))  # warm: Pillow's codecs loaded, as in a running bot
        start = time.perf_counter()
        times = timed(lambda i: renderer.stamp(source, sha, url(i)), args.partners)
        elapsed = time.perf_counter() - start
        size = renderer.stamped_path(sha, url(0)).stat().st_size
        with Image.open(renderer.stamped_path(sha, url(0))) as copy:
            shape = copy.size
        cached = timed(lambda i: renderer.stamp(source, sha, url(0)), args.runs)
        print(f"  {args.partners} copies in {elapsed:.1f} s: {args.partners / elapsed:.1f} copies/s (one core)")
        print(f"    copy, cold (cache miss)      {ms(times)}")
        print(f"    copy, cached (cache hit)     {ms(cached)}")
        print(f"    copy JPEG                    {size / 1024:7.0f} KiB, {shape[0]}x{shape[1]}")
        print("  the bare poster baseline and the poster itself, same run:")
        baseline = bench_template(renderer, "classic", args.runs)
        cold, hit = statistics.median(times), statistics.median(cached)
        print(f"  ratio to the bare poster baseline: copy {cold / baseline:.2f}, cached copy {hit / baseline:.4f}")
        summary("content image copy (cold)", cold * 1000, "ms", baseline * 1000, "ms open-paste-encode", cold / baseline)
        summary("content image copies", args.partners / elapsed, "copies/s")
        summary("content image copy (cached)", hit * 1000, "ms", baseline * 1000, "ms open-paste-encode", hit / baseline)


if __name__ == "__main__":
    main()
