"""PDF text in a separate, time- and memory-bounded process.

pypdf is pure Python and a hostile PDF can keep it busy for hours: a few KB of file whose hundreds of
pages all draw one content stream that inflates to 75 MB, or form XObjects that draw each other ten times
over. A thread cannot be stopped, and a stuck one holds a slot of the shared thread pool (and the GIL)
for good. So pypdf runs in a child process that gets no secrets (a bare environment), a memory cap and a
deadline; it reports the document's metadata and then one page per line as it goes, so when it is
killed at the deadline the pages read so far are kept.

Run as `python -m ringkas.pdf_text --pages N --seconds S --chars C` with the PDF on stdin (the child side).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PDF_TIME_LIMIT = 30.0  # seconds of pypdf work per document; the child is killed a little after
PDF_MEMORY_LIMIT = 1536 * 1024 * 1024  # bytes of address space for the child (Linux/macOS)
_KILL_GRACE = 5.0  # the child stops itself at the limit between pages; this is for a page that never ends
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class PdfContent:
    """What the child reported: metadata, the page texts read, and why it stopped early (if it did)."""

    pages: list[str] = field(default_factory=list)
    page_count: int = 0
    title: str | None = None
    author: str | None = None
    created: str | None = None  # ISO date
    locked: bool = False
    error: str | None = None  # the document could not be opened at all
    stopped: str | None = None  # "time" when the deadline cut reading short


def read_pdf(body: bytes, *, max_pages: int, max_chars: int, time_limit: float | None = None) -> PdfContent:
    """Text of up to `max_pages` pages (stopping after `max_chars` characters), within `time_limit` s."""
    limit = PDF_TIME_LIMIT if time_limit is None else time_limit
    command = [
        sys.executable, "-m", "ringkas.pdf_text",
        "--pages", str(max_pages), "--seconds", f"{limit:g}", "--chars", str(max_chars),
    ]
    # No inherited environment: the child parses hostile bytes and must not see API keys or tokens.
    env = {"PYTHONPATH": _PACKAGE_ROOT, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8", "PATH": os.defpath}
    timed_out = False
    try:
        done = subprocess.run(  # noqa: S603 - our own module with fixed arguments; the PDF goes to stdin
            command, input=body, capture_output=True, timeout=limit + _KILL_GRACE, env=env, check=False
        )
        output = done.stdout
    except subprocess.TimeoutExpired as exc:  # run() has killed the child
        timed_out = True
        output = exc.stdout or b""
    return _parse_report(output, timed_out=timed_out)


def _parse_report(output: bytes, *, timed_out: bool = False) -> PdfContent:
    content = PdfContent()
    saw_header = False
    for raw in output.split(b"\n"):
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a line cut by the kill, or noise
        if not isinstance(line, dict):
            continue
        if "page" in line and isinstance(line.get("text"), str):
            content.pages.append(line["text"])
        elif "count" in line:
            saw_header = True
            content.page_count = int(line.get("count") or 0)
            content.title = _str_or_none(line.get("title"))
            content.author = _str_or_none(line.get("author"))
            content.created = _str_or_none(line.get("created"))
        elif line.get("locked"):
            content.locked = True
        elif "error" in line:
            content.error = str(line["error"])[:200]
        elif line.get("stopped"):
            content.stopped = str(line["stopped"])
    if timed_out:
        content.stopped = "time"
    elif not saw_header and not content.locked and content.error is None:
        content.error = "the PDF reader stopped before opening the document"
    return content


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --- the child -------------------------------------------------------------------------------------

_COLUMN_GAP = re.compile(r"\S {4,}\S")


def _page_text(page: Any) -> str:
    """Layout mode keeps blank lines between paragraphs; plain mode keeps multi-column text in order."""
    try:
        layout = page.extract_text(extraction_mode="layout") or ""
    except Exception:  # pypdf's layout mode is stricter about odd fonts than plain mode
        layout = ""
    lines = [line for line in layout.split("\n") if line.strip()]
    if lines and sum(1 for line in lines if _COLUMN_GAP.search(line.strip())) <= 0.3 * len(lines):
        return layout
    return page.extract_text() or ""


def _limit_memory(limit: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: only the deadline applies
        return
    with contextlib.suppress(ValueError, OSError):  # a lower hard limit is already set
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, ensure_ascii=True) + "\n")
    sys.stdout.flush()


def _info(reader: Any) -> dict[str, str | None]:
    found: dict[str, str | None] = {"title": None, "author": None, "created": None}
    try:
        info = reader.metadata
        if info is None:
            return found
        for key in ("title", "author"):
            value = getattr(info, key, None)
            found[key] = str(value)[:1000] if value else None
        created = info.creation_date
        found["created"] = created.date().isoformat() if created else None
    except Exception as exc:  # damaged metadata is no reason to lose the text
        found["metadata_error"] = type(exc).__name__
    return found


def _child(max_pages: int, seconds: float, max_chars: int) -> int:
    _limit_memory(PDF_MEMORY_LIMIT)
    body = sys.stdin.buffer.read()
    try:
        from pypdf import PdfReader

        started = time.monotonic()  # the time limit is for reading, not for importing pypdf

        reader = PdfReader(io.BytesIO(body), strict=False)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception:  # pypdf raises several types for unsupported encryption
                unlocked = 0
            if not unlocked:
                _emit({"locked": True})
                return 0
        pages = reader.pages
        count = len(pages)
        _emit({"count": count, **_info(reader)})
        size = 0
        for index in range(min(count, max_pages)):
            if time.monotonic() - started > seconds:
                _emit({"stopped": "time"})
                break
            text = _page_text(pages[index])
            _emit({"page": index, "text": text})
            size += len(text)
            if size > max_chars:
                break
    except MemoryError:
        _emit({"error": "MemoryError"})
    except Exception as exc:  # any failure inside pypdf is a damaged document to the parent
        _emit({"error": repr(exc)[:200]})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ringkas.pdf_text")
    parser.add_argument("--pages", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--chars", type=int, required=True)
    args = parser.parse_args(argv)
    return _child(args.pages, args.seconds, args.chars)


if __name__ == "__main__":
    sys.exit(main())
