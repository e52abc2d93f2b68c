"""Extraction quality and speed on the development set: Ringkas against trafilatura alone.

    python bench/bench_extract.py [--worst 10]

Uses ../shared/extraction-dev (300 annotated real pages and its scorer, beside the repository); skips
with a message when it is absent. Prints precision, recall, F1, pages that failed (raised or came
back empty) and ms/page for trafilatura alone (`include_comments=False`) and for
`ringkas.extract.article_from_file` (the path of `python bot.py extract FILE`), then the ratios the
issue asks for: F1 at least trafilatura's, no failure where it finds text, at most 1.3x its time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "extraction-dev"
sys.path.insert(0, str(ROOT))


def load_scorer():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("extraction_dev_score", DEV / "score.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worst", type=int, default=0, help="list the N pages where Ringkas loses most")
    args = parser.parse_args()
    if not (DEV / "score.py").is_file() or not (DEV / "evaldata.json").is_file():
        print(f"skipped: the development set is not at {DEV} (it lives beside the repository, in ../shared)")
        return 0
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    scorer = load_scorer()
    data = json.loads((DEV / "evaldata.json").read_text(encoding="utf-8"))
    scorer.project_extractor(DEV / "pages" / next(iter(data.values()))["file"])  # warm up models, caches
    rows = {
        "trafilatura alone": scorer.score(scorer.trafilatura_alone, data, DEV / "pages"),
        "ringkas (bot.py extract)": scorer.score(scorer.project_extractor, data, DEV / "pages"),
    }
    empty = {}
    for name, result in rows.items():
        empty[name] = {file for loss, file, found, want, leaked in result["per_page"] if found == 0 and want}
    print(f"{len(data)} pages of {DEV}")
    print(f"{'extractor':28s} {'P':>6s} {'R':>6s} {'F1':>6s} {'failed':>6s} {'ms/page':>8s}")
    for name, result in rows.items():
        print(f"{name:28s} {result['precision']:6.3f} {result['recall']:6.3f} {result['f1']:6.3f} "
              f"{len(result['failed']):6d} {result['ms_per_page']:8.1f}")
    alone, ours = rows["trafilatura alone"], rows["ringkas (bot.py extract)"]
    lost = sorted(empty["ringkas (bot.py extract)"] - empty["trafilatura alone"])
    print(f"\nF1 ringkas - trafilatura: {ours['f1'] - alone['f1']:+.3f}")
    ratio = ours["ms_per_page"] / alone["ms_per_page"]
    print(f"time ratio ringkas / trafilatura: {ratio:.2f}x (goal <= 1.3x)")
    print(f"failures: {len(ours['failed'])}; trafilatura finds text, ringkas none: {len(lost)}")
    for line in ours["failed"]:
        print(f"    failed {line}")
    for file in lost:
        print(f"    lost {file}")
    for _loss, file, found, want, leaked in ours["per_page"][: args.worst]:
        print(f"    {file}: {found}/{want} main-text snippets, {leaked} boilerplate snippets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
