"""Extraction speed and quality per page, and how plain trafilatura configurations compare.

    python bench/bench_extract.py [--runs 5]

Pages: tests/fixtures/pages/*.html plus ../shared/fixtures/*.html (beside the repo) when present.
For each page it prints Ringkas's extraction time (median of --runs) and text length, then the text
length of every trafilatura configuration that was compared. Where tests/fixtures/pages/expectations.json
lists a page, "miss" counts article paragraphs missing from the text and "junk" counts boilerplate
snippets (ads, "Baca juga", comments, newsletter boxes, ...) that leaked into it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trafilatura  # noqa: E402
from trafilatura.deduplication import LRUCache  # noqa: E402
from trafilatura.utils import load_html  # noqa: E402

from ringkas.documents import FetchResult  # noqa: E402
from ringkas.errors import RingkasError  # noqa: E402
from ringkas.extract import decode_body, extract_article  # noqa: E402

PAGES = ROOT / "tests" / "fixtures" / "pages"
SHARED = ROOT.parent / "shared" / "fixtures"
EXPECTATIONS: dict[str, Any] = json.loads((PAGES / "expectations.json").read_text(encoding="utf-8"))

BASE = {"include_comments": False, "include_tables": True, "output_format": "markdown"}
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "precision": {"favor_precision": True},
    "recall": {"favor_recall": True},
    "fast": {"fast": True},
    "txt-default": {"output_format": "txt"},
}


def pages() -> list[Path]:
    found = sorted(PAGES.glob("*.html"))
    if SHARED.is_dir():
        found += sorted(SHARED.glob("*.html"))
    return found


def score(name: str, text: str) -> str:
    expected = EXPECTATIONS.get(name)
    if not expected:
        return ""
    miss = sum(1 for snippet in expected["must"] if snippet not in text)
    junk = sum(1 for snippet in expected["must_not"] if snippet in text)
    return f"miss={miss}/{len(expected['must'])} junk={junk}/{len(expected['must_not'])}"


def trafilatura_text(html: str, url: str | None, options: dict[str, Any]) -> str:
    tree = load_html(html)
    if tree is None:
        return ""
    merged = {**BASE, **options}
    return trafilatura.extract(tree, url=url, deduplicate=LRUCache(maxsize=4096), **merged) or ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per page (median is shown)")
    args = parser.parse_args()

    # warm up: language model, trafilatura/lxml caches
    warm = PAGES / "en_article_sidebars.html"
    url = "https://warm.example/"
    extract_article(FetchResult(url, url, 200, "text/html", None, warm.read_bytes()))

    totals: list[float] = []
    print(f"{'page':34} {'ms':>7} {'chars':>6}  quality")
    for path in pages():
        name = path.name
        url = EXPECTATIONS.get(name, {}).get("url", f"https://bench.example/{name}")
        body = path.read_bytes()
        fetched = FetchResult(url, url, 200, "text/html", None, body)
        timings = []
        text = ""
        error = ""
        for _ in range(max(1, args.runs)):
            started = time.perf_counter()
            try:
                text = extract_article(fetched).text
            except RingkasError as exc:
                error = exc.user_message
            timings.append((time.perf_counter() - started) * 1000)
        ms = statistics.median(timings)
        totals.append(ms)
        print(f"{name[:34]:34} {ms:7.1f} {len(text):6d}  {score(name, text) or error}")
        html, _ = decode_body(body)
        for config, options in CONFIGS.items():
            started = time.perf_counter()
            other = trafilatura_text(html, url, options)
            other_ms = (time.perf_counter() - started) * 1000
            print(f"    trafilatura {config:21} {other_ms:7.1f} {len(other):6d}  {score(name, other)}")
    if totals:
        median, worst = statistics.median(totals), max(totals)
        print(f"\n{len(totals)} pages: median {median:.1f} ms, max {worst:.1f} ms per page")


if __name__ == "__main__":
    main()
