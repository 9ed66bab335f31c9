"""Benchmark: a burst of `海报` taps after a broadcast. --posters members of one task ask for their poster
within --seconds (evenly spread); each is drawn in a worker thread as the bot does (asyncio.to_thread)
and written to the disk cache. Prints time-to-image p50/p99 (from the tap to the PNG on disk) and
CPU-seconds per poster, for the renderer (the task's layer cached: a member's poster adds only
name, QR code, avatar and the encode) and, in the same run, for the same posters drawn whole on the
bare background (the path before the layer, the baseline).

    python bench/poster_burst.py [--posters 1000] [--seconds 10] [--template classic]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.render import posters  # noqa: E402
from bot.render.posters import PosterRenderer, PosterRequest  # noqa: E402
from common import percentile, summary  # noqa: E402

TEMPLATES = REPO / "assets" / "posters"
TITLE = "2025 云上增长峰会 · 企业数字化转型实战训练营限时免费报名"


class WholeRenderer(PosterRenderer):
    """Every poster drawn whole on the bare background and encoded by Pillow, with the text fits, the
    avatar's disc and the logo's size made afresh: the way before the task's layer was cached."""

    def png(self, request: PosterRequest, layered: bool = True) -> bytes:
        posters.fit_text.cache_clear()
        posters.avatar_disc.cache_clear()
        if (logo := posters.load_template(*self._files(request.template))[3]) is not None:
            logo._sizes.clear()
        return super().png(request, layered=False)


def request(template: str, i: int) -> PosterRequest:
    return PosterRequest(template, f"https://partner.example.com/t/b{i:08d}kQ", f"王子涵{i}",
                         f"杭州云栖信息科技有限公司{i % 40}", TITLE)


async def burst(renderer: PosterRenderer, template: str, count: int, seconds: float) -> tuple[list[float], float]:
    """Times from tap to image, and CPU-seconds (all threads) per poster."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def tap(i: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - loop.time()))
        started = time.perf_counter()
        await asyncio.to_thread(renderer.render, request(template, i))
        times.append(time.perf_counter() - started)

    cpu = time.process_time()
    start = loop.time()
    await asyncio.gather(*(tap(i, start + seconds * i / count) for i in range(count)))
    return times, (time.process_time() - cpu) / count


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as cache:
        layered = PosterRenderer(TEMPLATES, Path(cache) / "layered")
        whole = WholeRenderer(TEMPLATES, Path(cache) / "whole")
        for renderer in (layered, whole):  # fonts and template loaded, as in a bot that has run a while
            renderer.render(request(args.template, -1))
        posters.task_layer.cache_clear()  # the burst's task is new: its first poster draws the layer
        print(f"poster burst: {args.posters} taps in {args.seconds:g} s, template {args.template}, "
              f"{len(os.sched_getaffinity(0))} cores (shared with whatever else runs)")
        results = {}
        for name, renderer in (("layered", layered), ("whole (baseline)", whole)):
            times, cpu = await burst(renderer, args.template, args.posters, args.seconds)
            results[name] = (percentile(times, 0.5), percentile(times, 0.99), max(times), cpu)
            print(f"  {name:18s} time to image p50 {results[name][0] * 1000:7.0f} ms  p99 {results[name][1] * 1000:7.0f} ms"
                  f"  last {results[name][2]:6.1f} s   CPU per poster {cpu * 1000:6.1f} ms")
    (p50, p99, _, cpu), (b50, b99, _, bcpu) = results["layered"], results["whole (baseline)"]
    label = f"{args.posters} posters in {args.seconds:g} s"
    summary(f"poster burst p50 ({label})", p50 * 1000, "ms", b50 * 1000, "ms drawn whole", p50 / b50)
    summary(f"poster burst p99 ({label})", p99 * 1000, "ms", b99 * 1000, "ms drawn whole", p99 / b99)
    summary("poster CPU per poster", cpu * 1000, "ms", bcpu * 1000, "ms drawn whole", cpu / bcpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posters", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--template", default="classic")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
