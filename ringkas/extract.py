"""Main text and metadata from fetched bytes: HTML (trafilatura), PDF (pypdf) and plain text.

Web pages are hostile and messy. The pipeline for HTML is:
1. decode with the right charset (BOM > valid or mostly valid UTF-8 > header > meta/XML declaration >
   detection); refuse markup over the element/attribute budget (ringkas.reading.budget) before parsing;
2. read metadata from the untouched tree (meta tags, JSON-LD, the byline, htmldate, <html lang>,
   canonical rules);
3. extract with trafilatura's plain-text selection (headings marked `#`, blank lines between blocks)
   and choose between candidates with the rule measured on the development set (`choose_main_text`);
   when that finds nothing, parse the raw bytes the way trafilatura alone does and try again;
4. drop boilerplate lines ("Baca juga: …", ad labels), normalise whitespace, strip control characters.

Whatever Ringkas adds here may only add text or remove junk lines: bench/bench_extract.py measures it
against trafilatura alone.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import trafilatura
from htmldate import find_date
from lxml.etree import XPath
from lxml.html import HtmlElement
from trafilatura.metadata import examine_meta, extract_sitename, extract_title, normalize_authors
from trafilatura.settings import Document, set_date_params
from trafilatura.utils import load_html
from trafilatura.xml import xmltotxt

from ringkas.documents import Article, FetchResult
from ringkas.errors import NotAnArticle, NotFound, TooLarge, UnsupportedContent
from ringkas.language import close_languages, detect_language_with_confidence, normalize_language
from ringkas.pdf_text import read_pdf
from ringkas.reading.budget import check_element_budget, check_markup_budget
from ringkas.reading.markup import (
    HTML_TYPES,
    has_attribute_flood,
    is_pdf,
    looks_like_html,
    looks_like_pdf,
    looks_like_text,
    tame_attribute_floods,
)
from ringkas.urls import canonicalize, same_document, same_site

log = logging.getLogger("ringkas.extract")

MAX_TEXT_CHARS = 2_000_000
MAX_PDF_PAGES = 300
MAX_FILE_BYTES = 50 * 1024 * 1024
MIN_ARTICLE_LETTERS = 120
TRUNCATION_NOTE = "[… the rest of this document was cut: it is longer than {limit:,} characters.]"

# --- text hygiene -------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff\ufffe\uffff\u00ad]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def clean_text(text: str, *, limit: int = MAX_TEXT_CHARS) -> str:
    """NFC, no control characters or NULs, single spaces, at most one blank line, capped length."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    text = _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()
    if len(text) > limit:
        cut = text.rfind("\n\n", 0, limit)
        if cut < limit * 0.8:
            cut = limit
        text = text[:cut].rstrip() + "\n\n" + TRUNCATION_NOTE.format(limit=limit)
    return text


_NOT_LETTERS = re.compile(r"[\W_]+")


def _letters(text: str) -> int:
    """Letters and digits in the text (any script)."""
    return len(_NOT_LETTERS.sub("", text))


@lru_cache(maxsize=8)
def _first_letters(count: int) -> re.Pattern[str]:
    return re.compile(rf"(?:[\W_]*+[^\W_]){{{count}}}")


def _has_letters(text: str, count: int) -> bool:
    """At least `count` letters and digits: reads only as far as it takes to find them."""
    return _first_letters(count).match(text) is not None


# --- character encodings -----------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]{2,40})""", re.I)
_XML_ENCODING = re.compile(
    rb"""^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([a-zA-Z0-9_.:\-]{2,40})["']""", re.I
)
_BOM_CODECS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: WHATWG Encoding Standard label aliases that differ from Python's codecs.
_WHATWG = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "l1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252", "iso-8859-9": "cp1254", "latin5": "cp1254",
    "iso-8859-11": "cp874", "tis-620": "cp874", "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932",
    "x-sjis": "cp932", "ms_kanji": "cp932", "windows-31j": "cp932", "gb2312": "gb18030", "gbk": "gb18030",
    "x-gbk": "gb18030", "gb_2312-80": "gb18030", "euc-kr": "cp949", "ks_c_5601-1987": "cp949",
    "big5": "big5hkscs", "x-x-big5": "big5hkscs", "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
}


def _codec(label: str | bytes | None) -> str | None:
    """Python codec name for a charset label, or None when unknown or unsafe (utf-7, utf-16 w/o BOM)."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    label = label.strip().strip("\"'").lower()
    label = _WHATWG.get(label, label)
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    if name in {"utf-7", "utf-16", "utf-32", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"}:
        return "utf-8" if name != "utf-7" else None  # a page declaring UTF-16 in ASCII bytes is really UTF-8
    return name


def declared_charset_in_document(body: bytes) -> str | None:
    """Charset from an XML declaration or a <meta charset>/http-equiv tag in the first 4 KB."""
    head = body[:4096]
    found = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    return _codec(found.group(1)) if found else None


def decode_body(body: bytes, header_charset: str | None = None) -> tuple[str, str]:
    """Decode page bytes; returns (text, codec used).

    Order: BOM; strict UTF-8 when the bytes contain non-ASCII and are valid UTF-8 (legacy encodings
    practically never are, and mislabelled UTF-8 is the most common charset bug on the web); the
    Content-Type header charset; the document's own declaration; charset detection; UTF-8 with
    replacement characters as the last resort.
    """
    for bom, name in _BOM_CODECS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace"), name
    if not body.isascii():
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            lenient = body.decode("utf-8", errors="replace")
            if _mostly_utf8(lenient):
                return lenient, "utf-8"
    candidates = [_codec(header_charset), declared_charset_in_document(body)]
    for name in candidates:
        if name and name != "utf-8":
            try:
                return body.decode(name), name
            except UnicodeDecodeError:
                continue
    detected = _detect_charset(body)
    if detected:
        return body.decode(detected, errors="replace"), detected
    for name in candidates:
        if name:
            return body.decode(name, errors="replace"), name
    return body.decode("utf-8", errors="replace"), "utf-8"


#: Valid non-ASCII characters per invalid byte sequence above which bytes are UTF-8 with a few stray
#: bytes (a Latin-1 character pasted into a script comment, say), not a legacy encoding: in legacy text
#: nearly every accented letter is an invalid sequence. Charset detection read such a page of the
#: development set as cp1250 and garbled every umlaut; trafilatura alone read it right.
_UTF8_VALID_PER_INVALID = 10


def _mostly_utf8(lenient: str) -> bool:
    """True when a UTF-8 decoding with replacement characters is mostly valid characters."""
    invalid = lenient.count("\ufffd")
    valid = len(lenient) - len(lenient.encode("ascii", "ignore")) - invalid
    return valid >= _UTF8_VALID_PER_INVALID * invalid


def _detect_charset(body: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    return _codec(best.encoding) if best is not None else None


# --- boilerplate lines -------------------------------------------------------------------------------
#
# trafilatura decides which blocks are article text. Ringkas only drops whole *lines* of its output
# that are never article text: inline "read also" lead-ins and ad labels. Class/id based pruning of the
# tree was removed: on the extraction development set it emptied 9 of 300 pages whose wrappers merely
# had "related", "share" or "comment" in a class name (F1 0.914 with it, 0.933 without; bench/).

#: Lead-ins that only ever introduce a link to another story.
_READ_ALSO = re.compile(
    r"^\W{0,3}(baca juga|baca pula|simak juga|lihat juga|cek juga|simak video|read also|also read|"
    r"lire aussi|à lire aussi|a lire aussi|lesen sie auch|auch interessant|leia também|leia mais|lea también|"
    r"te puede interesar|noticias relacionadas|leggi anche|関連記事|関連ニュース|相关阅读|相關閱讀|延伸阅读|"
    r"推荐阅读|相关新闻)\b",
    re.IGNORECASE,
)
#: Lead-ins that are also ordinary words: only boilerplate when followed by a colon or arrow.
_READ_MORE = re.compile(
    r"^\W{0,3}(related|recommended|read more|more on this|see also|voir aussi|mehr zum thema|"
    r"related articles|related stories|more stories)\s*[:»›>|\-–—]",
    re.IGNORECASE,
)
_AD_LABEL = re.compile(
    r"^\W{0,5}(advertisement|advertising|ads?|iklan|anzeige|werbung|publicité|publicidad|pubblicità|広告|广告|"
    r"scroll to continue with content|sponsored|sponsored content|konten bersponsor|\[gambas:[^\]]{0,80}\])"
    r"\W{0,5}(scroll to continue with content)?\W{0,5}$",
    re.IGNORECASE,
)
#: The first words of a block that may be one of the lines above: one match per block instead of three.
_ANY_LEAD_IN = re.compile(
    "|".join(f"(?:{rule.pattern})" for rule in (_READ_ALSO, _READ_MORE, _AD_LABEL)), re.IGNORECASE
)
_EDITOR_CREDIT = re.compile(r"^[(（]\s*(责任编辑|責任編輯|编辑|編輯)\s*[:：][^)）]{0,30}[)）]$")
#: Boilerplate lines are short; longer lines are never tested (and no rule ever scans a long line).
_MAX_BOILER_LINE = 300


def is_boilerplate_line(line: str) -> bool:
    """A line of extracted text that only introduces another story, labels an ad or credits an editor."""
    if not line or len(line) > _MAX_BOILER_LINE:
        return False
    if _AD_LABEL.match(line) or _EDITOR_CREDIT.match(line):
        return True
    if _READ_ALSO.match(line):
        return len(line) < 160 or ":" in line[:40]
    return bool(_READ_MORE.match(line)) and len(line) < 160


_LEAD_IN_BLOCKS = ("p", "div", "li", "section", "aside", "span", "strong", "b", "h2", "h3", "h4", "table")


def _lead_in(el: HtmlElement) -> str | None:
    """The first words of an element: its own text, else its first child's (`<p><b>Read also:</b> …`)."""
    text = el.text
    if text is None or text.isspace():
        if not len(el):
            return None
        first = el[0]
        text = first.text if isinstance(first.tag, str) else None
        if text is None:
            return None
    return text.lstrip()[:80]


def drop_lead_in_blocks(tree: HtmlElement) -> int:
    """Remove short blocks whose text opens with a "read also" lead-in or is an ad label, in place.

    Text-led (never class/id-led): trafilatura keeps such a box as a paragraph, and sometimes stops
    at it and loses the paragraph that follows. Linear: only blocks whose first words match are measured.
    """
    doomed = []
    opens_boilerplate = _ANY_LEAD_IN.match
    for el in tree.iter(*_LEAD_IN_BLOCKS):
        lead = _lead_in(el)
        if not lead or not opens_boilerplate(lead):
            continue
        text = " ".join(el.text_content().split())
        if len(text) <= 300 and is_boilerplate_line(text) and el.find(".//h1") is None:
            doomed.append(el)
    for el in doomed:
        parent = el.getparent()
        if parent is not None:
            el.drop_tree()  # keeps the tail text
    return len(doomed)


# --- HTML -----------------------------------------------------------------------------------------

#: trafilatura's plain-text mode: the same text selection as trafilatura alone. Its Markdown mode keeps
#: emphasis while selecting, and on 17 of the development set's 300 pages that chose other, shorter text
#: (down to 44 % of what trafilatura alone reads); the structure is rendered from the selection instead.
_EXTRACT_OPTIONS: dict[str, Any] = {
    "output_format": "txt",  # also spares bare_extraction's own rendering of the text ("python" format)
    "include_comments": False,
    "include_tables": True,
    "include_images": False,
    "include_links": False,
}


@dataclass(frozen=True)
class HtmlMeta:
    title: str | None
    author: str | None
    published: str | None
    site_name: str | None
    declared_language: str | None
    canonical: str | None
    article_body: str | None = None  # JSON-LD articleBody, a candidate when trafilatura finds little


def extract_text_with(tree: HtmlElement, url: str | None, *, consume: bool = False, **options: Any) -> str:
    """One trafilatura pass on a private copy of the tree (on the tree itself with `consume=True`:
    trafilatura modifies the tree it reads), as light Markdown: `#` headings, `- ` list items, `|` table
    rows, blank lines between paragraphs.

    The text is what trafilatura's plain-text mode selects and renders; only the heading marks and the
    blank lines are added here. Its Markdown renderer first copies and escapes the whole tree (0.75 ms a
    page, 4 % of an extraction, for escapes Ringkas then had to undo).

    No `deduplicate`: with it trafilatura counts every paragraph in a cache (its own process-wide one
    unless given a fresh `LRUCache`) and discards a document whose text was seen too often, so a page
    of repeated paragraphs came back empty; it cost 0.7 ms a page and changed no score on the
    development set. trafilatura still drops repeats within a page on its own.
    """
    document = trafilatura.bare_extraction(
        tree if consume else deepcopy(tree), url=url, with_metadata=False, **{**_EXTRACT_OPTIONS, **options}
    )
    if document is None or document.body is None:
        return ""
    for head in document.body.iter("head"):
        level = (head.get("rend") or "")[1:2]
        head.text = f"{'#' * (int(level) if level in '123456' and level else 2)} {head.text or ''}"
    text = xmltotxt(document.body, include_formatting=False)
    return drop_boilerplate_lines(_blank_lines_between_blocks(text))


_LIST_ITEM = re.compile(r"^\s*- ")


def _blank_lines_between_blocks(text: str) -> str:
    """trafilatura's plain text has one block a line: a blank line between blocks, except between the
    items of a list or the rows of a table."""
    out: list[str] = []
    previous = ""
    for line in text.split("\n"):
        line = line.rstrip()
        if not line.strip():
            continue
        together = (line.startswith("|") and previous.startswith("|")) or (
            _LIST_ITEM.match(line) is not None and _LIST_ITEM.match(previous) is not None
        )
        if out and not together:
            out.append("")
        out.append(line)
        previous = line
    return "\n".join(out)


def drop_boilerplate_lines(text: str) -> str:
    """The text without lines that only introduce another story, label an ad or credit an editor."""
    return "\n".join(line.rstrip() for line in text.split("\n") if not is_boilerplate_line(line.strip()))


def _drop_title_heading(text: str, title: str | None) -> str:
    """Remove markdown headings that only repeat the title (it is metadata, shown separately)."""
    if not title:
        return text
    kept = []
    for line in text.split("\n"):
        heading = line.lstrip("#").strip()
        if line.startswith("#") and heading and (title.startswith(heading) or heading.startswith(title)):
            continue
        kept.append(line)
    return "\n".join(kept)


#: When trafilatura's default pass finds less than this many letters, the other candidates are tried.
#: Measured on the development set (bench/bench_extract.py --rules): the default pass is the best
#: single choice; reading more only pays where it found (almost) nothing.
_SHORT_TEXT_LETTERS = MIN_ARTICLE_LETTERS
#: JSON-LD articleBody replaces the extracted text when it is this much longer (a page whose visible
#: text is a teaser, a paywall stub or rendered by JavaScript).
_ARTICLE_BODY_GAIN = 2.0


def choose_main_text(
    default: str, others: Callable[[], Iterator[str]], article_body: str | None
) -> str:
    """The main text: trafilatura's default pass, unless it found little and another candidate
    (recall-oriented pass, baseline, JSON-LD articleBody) found more."""
    body = drop_boilerplate_lines(article_body) if article_body else ""
    if not body and _has_letters(default, _SHORT_TEXT_LETTERS):
        return default
    best, got = default, _letters(default)
    if body and _letters(body) > _ARTICLE_BODY_GAIN * max(got, MIN_ARTICLE_LETTERS):
        best, got = body, _letters(body)
    if got >= _SHORT_TEXT_LETTERS:
        return best
    for candidate in others():
        letters = _letters(candidate)
        if letters > got:
            best, got = candidate, letters
    return best


def _other_candidates(fresh_tree: Callable[[], HtmlElement | None], url: str | None) -> Iterator[str]:
    tree = fresh_tree()
    if tree is None:
        return
    drop_lead_in_blocks(tree)
    yield extract_text_with(tree, url, favor_recall=True)
    _, baseline_text, _ = trafilatura.baseline(tree)
    yield baseline_text


def main_text(
    tree: HtmlElement,
    url: str | None,
    article_body: str | None = None,
    fresh_tree: Callable[[], HtmlElement | None] | None = None,
) -> str:
    """Main text of a parsed page; `tree` is used up (read metadata first). `fresh_tree` gives another
    parse of the same page for the rare fallback passes (a copy of `tree` by default)."""
    if fresh_tree is None:
        pristine = deepcopy(tree)
        fresh_tree = lambda: pristine  # noqa: E731
    drop_lead_in_blocks(tree)
    return choose_main_text(
        extract_text_with(tree, url, consume=True), lambda: _other_candidates(fresh_tree, url), article_body
    )


def _json_ld_objects(tree: HtmlElement) -> Iterator[dict[str, Any]]:
    for script in tree.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text.strip()[:500_000])
        except (ValueError, RecursionError):  # "[[[[…" 100,000 deep is valid JSON to the scanner
            continue
        stack: list[Any] = [data]
        seen = 0
        while stack and seen < 200:
            item = stack.pop()
            seen += 1
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                yield item
                if "@graph" in item:
                    stack.append(item["@graph"])


def _ld_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        return _ld_text(value.get("name"))
    if isinstance(value, list):
        names = [n for n in (_ld_text(v) for v in value[:5]) if n]
        return ", ".join(names) or None
    return None


_ARTICLE_TYPES = frozenset(
    {
        "article", "newsarticle", "blogposting", "reportagenewsarticle", "techarticle",
        "analysisnewsarticle", "report", "scholarlyarticle", "opinionnewsarticle", "liveblogposting",
    }
)


def _ld_types(obj: dict[str, Any]) -> set[str]:
    kind = obj.get("@type")
    return {str(k).lower() for k in kind} if isinstance(kind, list) else {str(kind).lower()}


def _json_ld_article(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The first JSON-LD article object; a WebPage with a headline only when there is no article."""
    fallback: dict[str, Any] = {}
    for obj in objects:
        if not (obj.get("headline") or obj.get("datePublished")):
            continue
        kinds = _ld_types(obj)
        if kinds & _ARTICLE_TYPES:
            return obj
        if "webpage" in kinds and not fallback:
            fallback = obj
    return fallback


def _json_ld_article_body(objects: list[dict[str, Any]]) -> str | None:
    """The longest JSON-LD articleBody of an article object (HTML tags in it are not trusted as markup)."""
    best = ""
    for obj in objects:
        body = obj.get("articleBody")
        if isinstance(body, str) and len(body) > len(best) and _ld_types(obj) & _ARTICLE_TYPES:
            best = body
    if not best:
        return None
    if "<" in best:
        fragment = load_html(f"<html><body><div>{best[:MAX_TEXT_CHARS]}</div></body></html>")
        best = "\n\n".join(" ".join(p.split()) for p in fragment.itertext()) if fragment is not None else ""
    return best or None


def _iso_date(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = re.match(r"\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", value)
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3))).isoformat()
    except ValueError:
        return None


def _meta_content(tree: HtmlElement, *names: str) -> str | None:
    wanted = {n.lower() for n in names}
    for meta in tree.iter("meta"):
        key = meta.get("property") or meta.get("name") or meta.get("itemprop") or meta.get("http-equiv") or ""
        key = key.lower()
        if key in wanted:
            content = (meta.get("content") or "").strip()
            if content:
                return content
    return None


def _declared_language(tree: HtmlElement) -> str | None:
    root = tree.getroottree().getroot()
    for value in (
        root.get("lang"),
        root.get("{http://www.w3.org/XML/1998/namespace}lang"),
        root.get("xml:lang"),
        _meta_content(tree, "content-language", "language", "dc.language", "og:locale"),
    ):
        code = normalize_language(value)
        if code:
            return code
    return None


def _canonical_claim(tree: HtmlElement) -> str | None:
    for link in tree.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        if "canonical" in rel and link.get("href"):
            return link.get("href", "").strip()
    return _meta_content(tree, "og:url")


def trusted_canonical(claim: str | None, final_url: str) -> str:
    """The page's canonical claim when it is a safe http(s) URL of the same document, else the fetched URL.

    Only other renderings of this very page count (see `same_document`); a claim of another path is ignored.
    """
    fallback = canonicalize(final_url)
    if not claim or not final_url.lower().startswith(("http://", "https://")):
        return fallback
    claim = claim.strip()
    if len(claim) > 2048 or any(ch.isspace() for ch in claim):
        return fallback
    resolved = urljoin(final_url, claim)
    try:
        split, base = urlsplit(resolved), urlsplit(final_url)
        if split.username or split.password or "@" in split.netloc:
            return fallback
        _ = split.port
    except ValueError:
        return fallback
    scheme = split.scheme.lower()
    if scheme not in {"http", "https"} or not split.hostname:
        return fallback
    if scheme != base.scheme.lower() and scheme != "https":
        return fallback  # never downgrade https to http
    if not same_site(resolved, final_url) or not same_document(resolved, final_url):
        return fallback
    return canonicalize(resolved)


#: Attributes that may mark a byline, found in C (naming the attributes costs half of `//@*`).
#: trafilatura's own author search (a copy of the tree, pruning, up to three XPaths with a Python
#: regular-expression call per element) cost 4 ms a page on the development set, a fifth of a whole
#: extraction; `bench/bench_extract.py --authors` compares the two.
_BYLINE_WORDS = (
    "[contains(., 'uthor') or contains(., 'byl') or contains(., 'Byl') or contains(., 'writer') or "
    "contains(., 'ed-by') or contains(., 'journalist')]"
)
_BYLINE_ATTRIBUTES = XPath(
    f"//@class{_BYLINE_WORDS}|//@id{_BYLINE_WORDS}|//@rel[.='author']|//@itemprop[contains(., 'author')]|"
    "//@data-testid[contains(., 'Author')]|//@data-component[contains(., 'Byline')]"
)
_TIER_1_TAGS = frozenset({"a", "address", "div", "link", "p", "span", "strong"})
_TIER_2_TAGS = frozenset({"a", "div", "h3", "h4", "p", "span"})


def _byline_tier(element: HtmlElement) -> int:
    """How specific the element's byline markup is, as in trafilatura's three author XPaths (1 is most
    specific); 4 when it is no byline."""
    get = element.get
    css, ident, prop = get("class") or "", get("id") or "", get("itemprop") or ""
    if element.tag in _TIER_1_TAGS and (
        "author" in {get("rel"), ident, css} or prop == "author name"
        or get("data-testid") in {"AuthorCard", "AuthorURL"} or "author-name" in css or "uthorname" in css
        or "uthorName" in css
    ):
        return 1
    if element.tag in _TIER_2_TAGS and (
        css in {"byline", "byl"} or "author" in prop or "author" in ident or "author" in css
        or any(word in css for word in ("submitted-by", "posted-by", "journalist-name"))
    ):
        return 2
    if "Byline" in (get("data-component") or "") or "Author" in ident or any(
        word in css for word in ("Author", "writer", "byline", "Byline")
    ):
        return 3
    return 4


def _in_comments(element: HtmlElement) -> bool:
    return any(
        "comment" in (ancestor.get("class") or "") or "comment" in (ancestor.get("id") or "")
        for ancestor in element.iterancestors()
    )


def byline_author(tree: HtmlElement) -> str | None:
    """The author named by the page's most specific byline markup outside comment sections, if any."""
    candidates: list[tuple[int, int, HtmlElement]] = []
    seen: set[HtmlElement] = set()
    for order, attribute in enumerate(_BYLINE_ATTRIBUTES(tree)):
        element = attribute.getparent()
        if element is None or element in seen:
            continue
        seen.add(element)
        tier = _byline_tier(element)
        if tier < 4:
            candidates.append((tier, order, element))
    for _tier, _order, element in sorted(candidates, key=lambda c: c[:2]):
        text = " ".join(" ".join(element.itertext()).split())
        if 2 < len(text) < 120 and not _in_comments(element):
            return normalize_authors(None, text)
    return None


def _page_metadata(tree: HtmlElement, url: str | None, *, find_published: bool = True) -> Document:
    """What trafilatura's `extract_metadata` reads that Ringkas shows: meta tags (OpenGraph, Dublin
    Core, microdata), the title element, a marked-up byline, htmldate's publication date and the site
    name. Categories, tags, licence and its JSON-LD pass (Ringkas reads JSON-LD itself) are skipped:
    together with the full author search they made metadata cost more than half of trafilatura's own
    extraction. None of these steps modifies the tree."""
    meta = examine_meta(tree)
    if meta.author and " " not in meta.author:
        meta.author = None  # as trafilatura does: a single word is usually a user name
    meta.url = meta.url or url
    if find_published:  # htmldate: skipped when JSON-LD already dates the article
        date_config = set_date_params(False)
        date_config["url"] = meta.url
        meta.date = find_date(tree, **date_config)
    meta.sitename = meta.sitename or extract_sitename(tree)
    meta.clean_and_trim()
    return meta


def html_metadata(tree: HtmlElement, url: str | None) -> HtmlMeta:
    objects = list(_json_ld_objects(tree))
    ld = _json_ld_article(objects)
    ld_published = _iso_date(ld.get("datePublished"))
    canonical = _canonical_claim(tree)
    meta_url = urljoin(url, canonical) if url and canonical else canonical or url
    meta = _page_metadata(tree, meta_url, find_published=ld_published is None)
    title = _clean_field(meta.title) or _clean_field(_ld_text(ld.get("headline")))
    title = title or _clean_field(extract_title(tree))
    author = _clean_field(meta.author) or _clean_field(_ld_text(ld.get("author")))
    author = author or _clean_field(byline_author(tree))
    published = ld_published or _iso_date(meta.date)
    site_name = (
        _clean_field(_meta_content(tree, "og:site_name", "application-name"))
        or _clean_field(_ld_text(ld.get("publisher")))
        or _clean_field(meta.sitename)
    )
    return HtmlMeta(
        title=title,
        author=author,
        published=published,
        site_name=site_name,
        declared_language=_declared_language(tree),
        canonical=canonical,
        article_body=_json_ld_article_body(objects),
    )


def _clean_field(value: str | None, limit: int = 300) -> str | None:
    if not value:
        return None
    value = " ".join(_CONTROL.sub("", value).split())
    return value[:limit] or None


#: Characters of the text given to language detection: on the development set and the test pages
#: (309 pages), 400 give the answer the whole text gives on 308, as 2,000 do (the other page opens in
#: English and goes on in German), at 0.26 ms a page instead of 0.9.
_LANGUAGE_SAMPLE = 400


def _choose_language(declared: str | None, text: str) -> str | None:
    detected, confidence = detect_language_with_confidence(text[:_LANGUAGE_SAMPLE])
    if declared is None:
        return detected
    if detected and not close_languages(declared, detected) and confidence > 0.95 and _has_letters(text, 251):
        return detected  # templates often declare a default language for every page
    return declared


def _html_article(result: FetchResult) -> Article:
    html, _codec_used = decode_body(result.body, result.charset)
    html = re.sub(r"^\s*<\?xml[^>]*\?>", "", html, count=1)  # lxml refuses str input with a declaration
    check_element_budget(html)
    if has_attribute_flood(html):
        html = tame_attribute_floods(html)  # a tag of 200,000 attributes keeps its text, loses its attributes
    check_markup_budget(html)
    base = result.final_url if result.final_url.startswith(("http://", "https://")) else None
    tree = load_html(html)
    meta = html_metadata(tree, base) if tree is not None else None
    text = ""
    if tree is not None and meta is not None:
        text = main_text(tree, base, meta.article_body, fresh_tree=lambda: load_html(html))
    if not _has_letters(text, MIN_ARTICLE_LETTERS):
        # Never lose a page trafilatura reads from the same bytes with its own decoding and parsing.
        own = load_html(tame_attribute_floods(result.body))
        if own is not None:
            own_meta = html_metadata(own, base)
            own_text = main_text(own, base, own_meta.article_body)
            if _letters(own_text) > _letters(text):
                text, meta = own_text, meta or own_meta
    if meta is None:
        raise NotAnArticle("That page is empty or isn't readable HTML.")
    text = clean_text(_drop_title_heading(text, meta.title))
    _require_text(text, "page")
    return Article(
        url=result.url,
        canonical_url=trusted_canonical(meta.canonical, result.final_url) if base else result.final_url,
        text=text,
        title=meta.title,
        author=meta.author,
        published=meta.published,
        site_name=meta.site_name,
        language=_choose_language(meta.declared_language, text),
        source_kind="html",
    )


def _require_text(
    text: str, what: str, hint: str = "it may be a login wall, an app that needs JavaScript, or only images"
) -> None:
    if not _has_letters(text, MIN_ARTICLE_LETTERS):
        raise NotAnArticle(f"I couldn't find any article text in that {what} ({hint}).")


# --- PDF ----------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?:;\"”’)\]»。！？]$")


def _reflow(page_text: str) -> list[str]:
    """Join layout line breaks into paragraphs; keep real paragraph breaks."""
    lines = [line.strip() for line in page_text.split("\n")]
    lengths = sorted(len(line) for line in lines if line)
    typical = lengths[len(lengths) // 2] if lengths else 0
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        if not line:
            if current:
                paragraphs.append(current)
                current = ""
            continue
        if not current:
            current = line
            continue
        ends_sentence = bool(_SENTENCE_END.search(current))
        short_previous = len(current.rsplit("\n", 1)[-1]) < 0.75 * typical if typical else True
        if current.endswith("-") and not current.endswith(" -") and line[:1].islower():
            current = current[:-1] + line
        elif ends_sentence and short_previous:
            paragraphs.append(current)
            current = line
        else:
            current = f"{current} {line}"
    if current:
        paragraphs.append(current)
    return paragraphs


def _pdf_article(result: FetchResult) -> Article:
    content = read_pdf(result.body, max_pages=MAX_PDF_PAGES, max_chars=MAX_TEXT_CHARS)
    if content.locked:
        raise NotAnArticle("That PDF is password-protected, so I can't read it.")
    if content.stopped == "time" and not content.pages:
        raise NotAnArticle(
            "That PDF took too long to read (it may be built to be slow), so I stopped.",
            detail="pdf deadline",
        )
    if content.error is not None and not content.pages:
        raise NotAnArticle("That PDF is damaged or in a form I can't read.", detail=content.error)
    count = content.page_count
    parts: list[str] = []
    for page_text in content.pages:
        parts.extend(_reflow(page_text))
    text = "\n\n".join(parts)
    read = len(content.pages)
    if content.stopped == "time" and read < min(count, MAX_PDF_PAGES):
        text += f"\n\n[… only the first {read} of {count} pages were read: the rest took too long.]"
    elif count > MAX_PDF_PAGES:
        text += f"\n\n[… only the first {MAX_PDF_PAGES} of {count} pages were read.]"
    text = clean_text(text)
    _require_text(text, "PDF", hint="it may be scanned images without a text layer")
    title = _clean_field(content.title)
    author = _clean_field(content.author)
    published = _iso_date(content.created)
    if not title:
        title = _first_line_title(text)
    return Article(
        url=result.url,
        canonical_url=_canonical_of_fetched(result.final_url),
        text=text,
        title=title,
        author=author,
        published=published,
        site_name=_site_of(result.final_url),
        language=detect_language_with_confidence(text)[0],
        source_kind="pdf",
    )


# --- plain text ------------------------------------------------------------------------------------


def _first_line_title(text: str) -> str | None:
    for line in text.split("\n")[:5]:
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 150 else None
    return None


def _text_article(result: FetchResult) -> Article:
    decoded, _ = decode_body(result.body, result.charset)
    text = clean_text(decoded)
    _require_text(text, "document")
    return Article(
        url=result.url,
        canonical_url=_canonical_of_fetched(result.final_url),
        text=text,
        title=_first_line_title(text),
        site_name=_site_of(result.final_url),
        language=detect_language_with_confidence(text)[0],
        source_kind="text",
    )


def _canonical_of_fetched(url: str) -> str:
    return canonicalize(url) if url.lower().startswith(("http://", "https://")) else url


def _site_of(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.removeprefix("www.") if host else None


# --- public API ------------------------------------------------------------------------------------


def extract_article(result: FetchResult) -> Article:
    """Main text and metadata of a fetched document (HTML, PDF or plain text)."""
    if not result.body or not result.body.strip():
        raise NotAnArticle("That link returned an empty document.")
    kind = result.content_type
    if is_pdf(result):
        return _pdf_article(result)
    if kind in HTML_TYPES or kind.endswith("+xml") or kind in {"application/xml", "text/xml"}:
        return _html_article(result)
    if kind.startswith("text/"):
        if kind == "text/plain" and looks_like_html(result.body):
            # a page served as text/plain by a misconfigured server: show its words, not its tags
            return _html_article(result)
        return _text_article(result)
    raise UnsupportedContent(f"That link is a file of type {kind or 'unknown'}, which I can't summarize.")


def article_from_file(path: str | Path) -> Article:
    """Read a local .html/.htm/.pdf/.txt/.md file (type sniffed from the content, then the suffix)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise NotFound(f"There is no file at {path}.")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        limit_mb = MAX_FILE_BYTES // (1024 * 1024)
        raise TooLarge(f"That file is {size // (1024 * 1024)} MB; I read files up to {limit_mb} MB.")
    body = file.read_bytes()
    uri = file.resolve().as_uri()
    suffix = file.suffix.lower()
    if looks_like_pdf(body):
        kind = "application/pdf"
    elif suffix in {".html", ".htm", ".xhtml"} or looks_like_html(body):
        kind = "text/html"
    elif suffix in {".md", ".markdown"}:
        kind = "text/markdown"
    elif looks_like_text(body):
        kind = "text/plain"
    else:
        raise UnsupportedContent(f"{file.name} isn't an HTML page, PDF or text file, so I can't read it.")
    fetched = FetchResult(url=uri, final_url=uri, status=200, content_type=kind, charset=None, body=body)
    return extract_article(fetched)

