"""Article extraction: clean main text, metadata, encodings, PDFs, non-articles and canonical URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringkas.documents import FetchResult
from ringkas.errors import NotAnArticle, NotFound, UnsupportedContent
from ringkas.extract import (
    MAX_TEXT_CHARS,
    article_from_file,
    clean_text,
    decode_body,
    extract_article,
    trusted_canonical,
)
from ringkas.fetch import SafeFetcher
from tests.support.web_stub import WebStub

PAGES = Path(__file__).parent / "fixtures" / "pages"
EXPECTATIONS = json.loads((PAGES / "expectations.json").read_text(encoding="utf-8"))
SAMPLES = sorted(name for name in EXPECTATIONS if (PAGES / name).is_file())
#: How each sample is served: some declare their charset only inside the document.
SERVED_AS = {
    "fr_latin1_lireaussi.html": "text/html",
    "ja_shiftjis_related.html": "text/html",
    "zh_gbk_br_paragraphs.html": "text/html",
}
PARAGRAPHS = [
    "Regulators in Brussels opened a formal investigation into how large language model providers "
    "collect training data from news publishers, the European Commission said on Monday.",
    "The inquiry will examine whether licensing terms offered to publishers were fair, and whether "
    "opt-out mechanisms were respected when crawlers gathered articles for model training.",
    "Publishers welcomed the move, while AI companies said they would cooperate fully and expected "
    "the review to confirm that their practices complied with European copyright law.",
]


def page(body: str, *, head: str = "", lang: str | None = "en") -> str:
    lang_attr = f' lang="{lang}"' if lang else ""
    return f"<!DOCTYPE html><html{lang_attr}><head>{head}</head><body><article>{body}</article></body></html>"


def result(body: bytes | str, *, url: str = "https://news.example/story", content_type: str = "text/html",
           charset: str | None = None, final_url: str | None = None) -> FetchResult:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return FetchResult(url, final_url or url, 200, content_type, charset, data)


@pytest.fixture
async def fetcher():
    instance = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=5)
    yield instance
    await instance.aclose()


# --- real-looking pages through the real fetcher -------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
async def test_sample_pages_are_complete_and_clean(name: str, web: WebStub, fetcher) -> None:
    expected = EXPECTATIONS[name]
    content_type = SERVED_AS.get(name, "text/html; charset=utf-8")
    url = web.add(f"/{name}", (PAGES / name).read_bytes(), content_type=content_type)
    fetched = await fetcher.fetch(url)
    article = extract_article(fetched)

    missing = [snippet for snippet in expected["must"] if snippet not in article.text]
    leaked = [snippet for snippet in expected["must_not"] if snippet in article.text]
    assert missing == [], f"article paragraphs missing from {name}"
    assert leaked == [], f"boilerplate leaked into {name}"
    assert "\n\n" in article.text  # paragraphs stay separated by blank lines
    assert "**" not in article.text
    for field in ("title", "author", "published", "site_name", "language"):
        assert getattr(article, field) == expected[field], field
    # canonical: the page's own same-site canonical, or the fetched URL when it claims another site
    assert article.canonical_url.startswith(("https://", "http://127.0.0.1"))
    assert article.source_kind == "html"
    assert article.url == url


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_pages_metadata_and_canonical_on_their_own_site(name: str) -> None:
    expected = EXPECTATIONS[name]
    charset = None if name in SERVED_AS else "utf-8"
    article = extract_article(result((PAGES / name).read_bytes(), url=expected["url"], charset=charset))
    assert article.canonical_url == expected["canonical_url"]
    assert article.title == expected["title"]
    assert article.published == expected["published"]


def test_structure_is_kept_as_text() -> None:
    article = extract_article(result((PAGES / "en_article_sidebars.html").read_bytes(), charset="utf-8"))
    text = article.text
    assert "## Where the money goes" in text
    assert "- Compute contracts with its two cloud partners" in text
    assert "| Research | 120 | 310 |" in text
    assert not text.startswith("#")  # the title is metadata, not repeated as the first line


def test_extraction_is_repeatable() -> None:
    """trafilatura's process-wide de-duplication would empty a page seen twice; ours must not."""
    body = (PAGES / "de_comments.html").read_bytes()
    first = extract_article(result(body, charset="utf-8")).text
    second = extract_article(result(body, charset="utf-8")).text
    assert first == second and len(first) > 1000


def test_inline_read_also_boxes_and_ad_labels_are_removed() -> None:
    body = page(
        f"<h1>Judul Berita</h1><p>{PARAGRAPHS[0]}</p>"
        "<p><strong>Baca juga:</strong> <a href='/x'>Artikel lain yang tidak relevan</a></p>"
        "<div class='ads'>ADVERTISEMENT</div><p>SCROLL TO CONTINUE WITH CONTENT</p>"
        f"<p>{PARAGRAPHS[1]}</p><p>Read also: <a href='/y'>Some other story entirely</a></p>"
        "<div class='share-buttons'><a href='#'>Share on Facebook</a></div>"
        f"<p>{PARAGRAPHS[2]}</p>",
        lang="en",
    )
    text = extract_article(result(body)).text
    for paragraph in PARAGRAPHS:
        assert paragraph in text
    for junk in ("Baca juga", "Artikel lain", "ADVERTISEMENT", "SCROLL TO CONTINUE", "Read also", "Share on"):
        assert junk not in text


def test_boilerplate_rules_spare_look_alike_article_content() -> None:
    body = page(
        f"<p>{PARAGRAPHS[0]}</p><p>Related to the probe, the Commission said more requests would follow.</p>"
        f"<div class='article-commentary'><p class='commentary__text'>{PARAGRAPHS[1]}</p></div>"
        "<table class='share-price'><tr><th>Ticker</th><th>Close</th></tr>"
        "<tr><td>MSFT</td><td>410.2</td></tr></table>"
        f"<p>{PARAGRAPHS[2]}</p><p>Related: <a href='/x'>Another story about something else</a></p>"
    )
    text = extract_article(result(body)).text
    assert "Related to the probe" in text
    assert PARAGRAPHS[1] in text
    assert "| MSFT | 410.2 |" in text
    assert "Another story" not in text


# --- encodings -------------------------------------------------------------------------------------

FRENCH = "Le café coûte 3 € à Besançon – c’est « raisonnable », déclare Zoë."
JAPANESE = "日本語の記事です。生成AIの開発競争が激しさを増している。" * 6
CHINESE = "朱镕基在北京发表讲话，谈到人工智能产业的发展前景以及数据安全的重要性。" * 6
INDONESIAN = "Kecerdasan artifisial mengubah cara kerja redaksi di seluruh Indonesia. " * 6


def _html_with(text: str, meta: str = "", lang: str = "en") -> str:
    paragraphs = "".join(f"<p>{text} {i}</p>" for i in range(4))
    head = f"<head>{meta}<title>t</title></head>"
    return f"<html lang='{lang}'>{head}<body><article>{paragraphs}</article></body></html>"


@pytest.mark.parametrize(
    ("body", "header_charset", "expected"),
    [
        # windows-1252 named only in the Content-Type header
        (_html_with(FRENCH, lang="fr").encode("cp1252"), "windows-1252", FRENCH),
        # ISO-8859-1 declared: browsers (WHATWG) read it as windows-1252, so € and ’ survive
        (_html_with(FRENCH, "<meta http-equiv='Content-Type' content='text/html; charset=ISO-8859-1'>",
                    "fr").encode("cp1252"), None, FRENCH),
        (_html_with(JAPANESE, "<meta charset='Shift_JIS'>", "ja").encode("cp932"), None, JAPANESE),
        (_html_with(JAPANESE, "", "ja").encode("shift_jis"), "shift_jis", JAPANESE),
        # GB2312 declared, but the page uses a GBK-only character (镕), as real pages do
        (_html_with(CHINESE, "<meta charset='gb2312'>", "zh").encode("gbk"), None, CHINESE),
        # UTF-8 with no declaration anywhere
        (_html_with(INDONESIAN + " Rp 5.000 — “kutipan” ", lang="id").encode("utf-8"), None, "“kutipan”"),
        (_html_with(JAPANESE, lang="ja").encode("utf-8"), None, JAPANESE),
        # the header contradicts the meta tag: the header wins ...
        (_html_with(FRENCH, "<meta charset='utf-8'>", "fr").encode("cp1252"), "windows-1252", FRENCH),
        # ... unless the bytes are valid UTF-8 mislabelled as Latin-1 (the commonest charset bug)
        (_html_with(FRENCH, "<meta charset='utf-8'>", "fr").encode("utf-8"), "iso-8859-1", FRENCH),
        # a UTF-8 byte order mark beats everything
        (b"\xef\xbb\xbf" + _html_with(FRENCH, lang="fr").encode("utf-8"), "iso-8859-1", FRENCH),
        # XHTML with an XML declaration
        (("<?xml version='1.0' encoding='windows-1252'?>" + _html_with(FRENCH, lang="fr")).encode("cp1252"),
         None, FRENCH),
    ],
)
def test_encodings(body: bytes, header_charset: str | None, expected: str) -> None:
    article = extract_article(result(body, charset=header_charset))
    assert expected in article.text
    assert "\ufffd" not in article.text


def test_undeclared_legacy_encoding_is_detected() -> None:
    text = ("Les députés ont adopté à l’unanimité un texte très attendu sur l’intelligence artificielle. "
            "Le ministère a précisé que les décrets d’application seront publiés cet été. ") * 3
    body = _html_with(text, lang="fr").encode("cp1252")
    decoded, codec = decode_body(body)
    assert "députés" in decoded and "l’unanimité" in decoded, codec


# --- PDF and plain text ----------------------------------------------------------------------------


async def test_pdf_through_the_fetcher(web: WebStub, fetcher) -> None:
    url = web.add("/report.pdf", (PAGES / "report.pdf").read_bytes(), content_type="application/octet-stream")
    article = extract_article(await fetcher.fetch(url))
    assert article.source_kind == "pdf"
    assert article.title == "State of AI Compute 2024"
    assert article.author == "Ringkas Test Lab"
    assert article.published == "2024-05-01"
    assert article.language == "en"
    assert (
        "Demand for accelerator chips grew faster than supply for the third year in a row. Cloud providers "
        "reported waiting lists" in article.text
    )
    assert "Energy has become the binding constraint." in article.text
    assert article.text.count("\n\n") >= 3  # paragraphs kept apart, layout line breaks joined
    assert article.canonical_url == url


@pytest.mark.parametrize(
    ("name", "words"),
    [("encrypted.pdf", "password-protected"), ("blank.pdf", "scanned images")],
)
def test_unreadable_pdfs(name: str, words: str) -> None:
    with pytest.raises(NotAnArticle) as caught:
        extract_article(result((PAGES / name).read_bytes(), content_type="application/pdf"))
    assert words in caught.value.user_message


def test_damaged_pdf() -> None:
    with pytest.raises(NotAnArticle) as caught:
        extract_article(result(b"%PDF-1.7\n1 0 obj <<< broken", content_type="application/pdf"))
    assert "damaged" in caught.value.user_message


def test_plain_text_article() -> None:
    body = "AI chip exports tighten\n\n" + "\n\n".join(PARAGRAPHS) + "\x00\x07 trailing  spaces   here\n"
    article = extract_article(result(body, content_type="text/plain", charset="utf-8"))
    assert article.source_kind == "text"
    assert article.title == "AI chip exports tighten"
    assert PARAGRAPHS[1] in article.text
    assert "\x00" not in article.text and "\x07" not in article.text
    assert "trailing spaces here" in article.text
    assert article.language == "en"


def test_local_files(tmp_path: Path) -> None:
    markdown = tmp_path / "notes.md"
    markdown.write_text("# Weekly AI notes\n\n" + "\n\n".join(PARAGRAPHS), encoding="utf-8")
    article = article_from_file(markdown)
    assert article.title == "Weekly AI notes" and article.url.startswith("file://")
    assert article.canonical_url == article.url

    html_copy = tmp_path / "saved page.htm"
    html_copy.write_bytes((PAGES / "de_comments.html").read_bytes())
    article = article_from_file(html_copy)
    assert article.language == "de" and "Mit 523 Ja-Stimmen" in article.text

    renamed_pdf = tmp_path / "download.bin"
    renamed_pdf.write_bytes((PAGES / "report.pdf").read_bytes())
    assert article_from_file(renamed_pdf).source_kind == "pdf"

    with pytest.raises(NotFound):
        article_from_file(tmp_path / "missing.html")
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(UnsupportedContent):
        article_from_file(binary)


# --- pages that are not articles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "html",
    [
        # login wall
        "<html><head><title>Sign in</title></head><body><form><h2>Please log in to continue reading</h2>"
        "<input name=user><input type=password><button>Log in</button></form>"
        "<p>Not a member? <a href='/join'>Subscribe</a></p></body></html>",
        # JavaScript app shell
        "<!doctype html><html><head><title>App</title><script src='/bundle.js'></script></head>"
        "<body><noscript>You need to enable JavaScript to run this app.</noscript>"
        "<div id='root'></div></body></html>",
        # image-only page
        "<html><body><figure><img src='/chart.png' alt='chart'></figure><figure><img src='/b.png'></figure>"
        "</body></html>",
        # nothing at all
        "   ",
    ],
)
def test_pages_without_article_text(html: str) -> None:
    with pytest.raises(NotAnArticle):
        extract_article(result(html))


# --- canonical URL rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "final_url", "expected"),
    [
        ("https://news.example/story", "https://news.example/story?utm_source=x", "https://news.example/story"),
        ("https://www.news.example/story", "https://amp.news.example/story", "https://www.news.example/story"),
        ("/story?id=1", "https://news.example/amp/story?id=1&amp=1", "https://news.example/story?id=1"),
        ("https://other-site.example/story", "https://news.example/s?fbclid=1", "https://news.example/s"),
        ("//evil.example/story", "https://news.example/s", "https://news.example/s"),
        ("javascript:alert(1)", "https://news.example/s", "https://news.example/s"),
        ("data:text/html,hi", "https://news.example/s", "https://news.example/s"),
        ("http://news.example/s", "https://news.example/s", "https://news.example/s"),  # no downgrade
        ("https://news.example/s", "http://news.example/s", "https://news.example/s"),  # upgrade is fine
        ("https://user:pw@news.example/s", "https://news.example/s", "https://news.example/s"),
        ("https://news.example.evil.example/s", "https://news.example/s", "https://news.example/s"),
        ("https://someone.github.io/post", "https://victim.github.io/post", "https://victim.github.io/post"),
        ("https://news.example/a b", "https://news.example/s", "https://news.example/s"),
        (None, "https://News.Example/s#frag", "https://news.example/s"),
    ],
)
def test_canonical_claims(claim: str | None, final_url: str, expected: str) -> None:
    assert trusted_canonical(claim, final_url) == expected


def test_page_cannot_claim_another_sites_url() -> None:
    head = "<link rel='canonical' href='https://bank.example/login'><meta property='og:url' content='https://x.example'>"
    body = page("".join(f"<p>{p}</p>" for p in PARAGRAPHS), head=head)
    article = extract_article(result(body, url="https://blog.example/post?utm_medium=social"))
    assert article.canonical_url == "https://blog.example/post"


def test_og_url_is_used_without_link_canonical() -> None:
    head = "<meta property='og:url' content='https://blog.example/post-canonical'>"
    body = page("".join(f"<p>{p}</p>" for p in PARAGRAPHS), head=head)
    article = extract_article(result(body, url="https://m.blog.example/post-canonical.amp?outputType=amp"))
    assert article.canonical_url == "https://blog.example/post-canonical"


# --- language ----------------------------------------------------------------------------------------


def test_language_declared_detected_and_template_mistakes() -> None:
    english = "".join(f"<p>{p}</p>" for p in PARAGRAPHS)
    assert extract_article(result(page(english, lang="en-GB"))).language == "en"
    assert extract_article(result(page(english, lang=None))).language == "en"
    indonesian = "".join(
        f"<p>{sentence}</p>"
        for sentence in [
            "Pemerintah mengumumkan rencana pembangunan pusat data nasional untuk mendukung pengembangan "
            "kecerdasan artifisial di dalam negeri.",
            "Menurut menteri, investasi tersebut akan membuka ribuan lapangan kerja baru bagi lulusan "
            "perguruan tinggi di bidang teknologi informasi.",
            "Sejumlah pengamat menilai langkah itu tepat, tetapi mengingatkan pentingnya perlindungan data "
            "pribadi masyarakat.",
            "Proyek tersebut ditargetkan mulai beroperasi pada akhir tahun depan setelah proses lelang "
            "selesai dilakukan.",
        ]
    )
    # a site template that declares English on an Indonesian article
    assert extract_article(result(page(indonesian, lang="en"))).language == "id"
    # a declared language close to the detected one wins (id/ms are easily confused)
    assert extract_article(result(page(indonesian, lang="ms"))).language == "ms"
    assert extract_article(result(page(indonesian, lang="in"))).language == "id"


# --- text hygiene ----------------------------------------------------------------------------------------


def test_clean_text_normalises_and_caps() -> None:
    assert clean_text("a\x00b\u200bc\r\nd\t\te\n\n\n\nf\u00a0g") == "abc\nd e\n\nf g"
    huge = ("word " * 20 + "\n\n") * (MAX_TEXT_CHARS // 100 + 10)
    capped = clean_text(huge)
    assert len(capped) <= MAX_TEXT_CHARS + 200
    assert capped.endswith("characters.]")


def test_huge_plain_text_is_cut_with_a_note() -> None:
    body = ("A paragraph about chips and models. " * 30 + "\n\n") * 2500  # ~2.7 MB
    article = extract_article(result(body, content_type="text/plain", charset="utf-8"))
    assert len(article.text) < MAX_TEXT_CHARS + 200
    assert "the rest of this document was cut" in article.text


def test_control_characters_in_html_are_stripped() -> None:
    body = page("".join(f"<p>{p}\x01\x1b[31m</p>" for p in PARAGRAPHS)).replace("Brussels", "Brus\x00sels")
    text = extract_article(result(body)).text
    assert "\x1b" not in text and "\x01" not in text and "\x00" not in text
    assert "Brussels" in text
