"""PDF bombs: tiny files that keep pypdf busy for hours must cost a bounded time and keep what was read."""

from __future__ import annotations

import zlib

import pytest

import ringkas.pdf_text as pdf_text
from ringkas.documents import FetchResult
from ringkas.errors import NotAnArticle
from ringkas.extract import extract_article

SENTENCE = (
    b"BT /F1 12 Tf 72 700 Td (Accelerator demand grew again this quarter while supply lagged behind.) Tj ET\n"
)
# Drawing operators: no text at all, so no text cap stops the reader, but every one must be interpreted.
SLOW_DRAWING = b"0 0 m 10 10 l S\n"


def pdf_with_shared_content(content: bytes, pages: int) -> bytes:
    """A valid PDF whose `pages` pages all draw one compressed content stream (a few KB for any size)."""
    stream = zlib.compress(content, 9)
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (10 + i) for i in range(pages))
        + b"] /Count %d >>" % pages,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    }
    for i in range(pages):
        objects[10 + i] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
        )
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def fetched(body: bytes) -> FetchResult:
    return FetchResult("https://reports.example/q3.pdf", "https://reports.example/q3.pdf", 200,
                       "application/pdf", None, body, {})


@pytest.fixture
def short_limits(monkeypatch) -> None:
    monkeypatch.setattr(pdf_text, "PDF_TIME_LIMIT", 1.0)
    # the grace also covers the child's interpreter start, which takes seconds on a loaded machine
    monkeypatch.setattr(pdf_text, "_KILL_GRACE", 5.0)


def test_many_slow_pages_stop_at_the_deadline_and_keep_the_pages_read(short_limits) -> None:
    # 300 pages (the page cap) of ~0.1 s each: about a minute of work in a 50 KB file.
    body = pdf_with_shared_content(SENTENCE * 3 + SLOW_DRAWING * 30_000, 300)
    assert len(body) < 60_000
    article = extract_article(fetched(body))
    assert "Accelerator demand grew again this quarter" in article.text
    assert "pages were read: the rest took too long" in article.text
    assert article.text.count("Accelerator demand") < 300 * 3


def test_a_page_that_never_ends_is_killed_and_told_plainly(short_limits, monkeypatch) -> None:
    # One page of 70 MB of drawing (just under pypdf's 75 MB inflation limit): about 8 s of work on an
    # idle machine, so the child is killed at 1 + 2 s; 48 MB (about 5.7 s) once finished in time.
    monkeypatch.setattr(pdf_text, "_KILL_GRACE", 2.0)
    body = pdf_with_shared_content(SLOW_DRAWING * 4_400_000, 1)
    with pytest.raises(NotAnArticle) as caught:
        extract_article(fetched(body))
    assert "took too long" in caught.value.user_message


def test_reader_reports_pages_metadata_and_locks() -> None:
    body = pdf_with_shared_content(SENTENCE * 5, 3)
    content = pdf_text.read_pdf(body, max_pages=2, max_chars=100_000)
    assert content.page_count == 3 and len(content.pages) == 2 and content.stopped is None
    assert "Accelerator demand" in content.pages[0]
    broken = pdf_text.read_pdf(b"%PDF-1.7\n1 0 obj <<< broken", max_pages=5, max_chars=1000)
    assert broken.error and not broken.pages


def test_the_reader_process_gets_no_secrets(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value-123")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-secret")
    # The environment read_pdf hands to the real child process (subprocess.run is watched, not replaced).
    captured: dict[str, dict[str, str]] = {}
    real_run = pdf_text.subprocess.run

    def spy(command, **kwargs):  # a real run, with its arguments recorded
        captured["env"] = kwargs["env"]
        return real_run(command, **kwargs)

    monkeypatch.setattr(pdf_text.subprocess, "run", spy)
    pdf_text.read_pdf(pdf_with_shared_content(SENTENCE, 1), max_pages=1, max_chars=1000)
    assert not any("sk-test" in value or "xoxb" in value for value in captured["env"].values())
    assert "OPENAI_API_KEY" not in captured["env"] and "SLACK_BOT_TOKEN" not in captured["env"]
