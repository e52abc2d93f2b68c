"""What a document's bytes are, and markup made safe to parse: content types, sniffing, attribute floods.

Kept apart from the HTTP client (`ringkas.fetch`) so that reading a page, in a worker or from a file,
never imports it.
"""

from __future__ import annotations

import re
from itertools import compress
from typing import TYPE_CHECKING, AnyStr

if TYPE_CHECKING:
    from ringkas.documents import FetchResult

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
FEED_TYPES = frozenset(
    {
        "application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/xml",
        "text/xml", "application/feed+json", "application/json", "application/x-rss+xml",
        "text/rss+xml", "text/atom+xml",
    }
)
#: Labels that say nothing about the content: decide by looking at the bytes.
UNKNOWN_TYPES = frozenset(
    {
        "", "application/octet-stream", "binary/octet-stream", "application/unknown", "unknown/unknown",
        "application/x-unknown", "application/download", "application/force-download",
        "application/x-download", "application/binary",
    }
)
# Each comment ends at its first "-->" (atomic group, possessive repeat): with a plain `(?:<!--.*?-->)*`
# a head of many comments backtracks exponentially, and sniffing runs on the event loop.
_HTML_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:(?><!--.*?-->)\s*)*+<(?:!doctype\s+html|html|head|body|meta|title|script|"
    rb"style|link|div|p|h1|article|main|section|table|base)\b",
    re.IGNORECASE | re.DOTALL,
)
_FEED_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:(?><!--.*?-->|<\?xml-stylesheet[^>]*>)\s*)*+<(?:rss|feed|rdf:rdf)\b",
    re.IGNORECASE | re.DOTALL,
)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def strip_bom(head: bytes) -> bytes:
    for bom in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :]
    return head


def is_pdf(result: FetchResult) -> bool:
    """A fetched document to read as a PDF: labelled so, or PDF bytes under a label that is not HTML."""
    kind = result.content_type
    return kind in PDF_TYPES or (kind not in HTML_TYPES and looks_like_pdf(result.body))


def looks_like_pdf(body: bytes) -> bool:
    # The PDF spec lets readers accept the header anywhere in the first 1024 bytes.
    return b"%PDF-" in body[:1024]


def looks_like_html(body: bytes) -> bool:
    head = strip_bom(body[:4096])
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    return bool(_HTML_START.match(head)) or b"<html" in head.lower()[:1024]


def looks_like_feed(body: bytes) -> bool:
    head = strip_bom(body[:4096])
    if _FEED_START.match(head):
        return True
    stripped = head.lstrip()
    return stripped.startswith(b"{") and b'"version"' in head and b"jsonfeed" in head


def looks_like_text(body: bytes) -> bool:
    """Printable text in some ASCII-compatible or UTF encoding (no NULs, few control bytes)."""
    head = body[:8192]
    if not head:
        return False
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head:
        return False
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls <= len(head) // 100


# --- attribute floods -----------------------------------------------------------------------------

#: libxml2 (HTML) and xml.sax (feeds) compare each new attribute of a tag with all earlier ones, so one
#: tag with 200,000 attributes (a 2 MB page) costs minutes of parsing, much of it holding the GIL. Real
#: tags have a handful; a tag with more than this many keeps its name and loses its attributes.
MAX_TAG_ATTRIBUTES = 200
# One pass over the document, every token possessive and consumed once (linear time). Start tags are read
# as HTML5 does: a quote opens a value only right after "=", and the tag ends at the first ">" outside one.
# Script, style and comments are not skipped: libxml2 may end them earlier than a tokenizer would think.
_START_TAG_PATTERN = (
    r"(?P<tag><(?P<name>[a-zA-Z][^\s/>=]*+)(?:=\s*+\"[^\"]*+\"?|=\s*+'[^']*+'?|[^>=]++|=)*+>?)"
)
_TEXT_RUN_PATTERN = r"|(?:[^<]++|<(?![a-zA-Z]))++"
_MARKUP_TOKEN = re.compile(_START_TAG_PATTERN + _TEXT_RUN_PATTERN)
_MARKUP_TOKEN_BYTES = re.compile((_START_TAG_PATTERN + _TEXT_RUN_PATTERN).encode())
_TAG_NAME = re.compile(r"<([^\s/>=]*)")
_QUOTED_VALUE = re.compile(r"=\s*\"[^\"]*\"?|=\s*'[^']*'?")
_QUOTED_VALUE_BYTES = re.compile(_QUOTED_VALUE.pattern.encode())


#: The same start tags as _MARKUP_TOKEN reads (a start tag can only begin at "<" and a letter, so
#: scanning for them alone finds the same tokens). No groups: `findall` stays in C.
_START_TAG = re.compile(_START_TAG_PATTERN.replace("?P<tag>", "?:").replace("?P<name>", "?:"))


def _flooded(tag: AnyStr, name_length: int) -> bool:
    """More than MAX_TAG_ATTRIBUTES attributes (quoted values count as one word each)."""
    rest = tag[name_length + 1 :]
    if isinstance(rest, bytes):
        words = _QUOTED_VALUE_BYTES.sub(b" ", rest).split()
    else:
        words = _QUOTED_VALUE.sub(" ", rest).split()
    return len(words) > MAX_TAG_ATTRIBUTES


def _tame_tag(match: re.Match[AnyStr]) -> AnyStr:
    tag = match.group("tag")
    if tag is None or len(tag) < 2 * MAX_TAG_ATTRIBUTES:
        return match.group(0)
    name = match.group("name")
    if not _flooded(tag, len(name)):
        return tag
    return b"<" + name + b">" if isinstance(name, bytes) else f"<{name}>"  # type: ignore[return-value,operator]


def has_attribute_flood(markup: str) -> bool:
    """True when `tame_attribute_floods` would change this text. Most pages have start tags long enough
    to need a look (a `srcset` of many sizes), almost none have a flood: finding the long tags in C and
    counting only their attributes costs a third of taming the whole page token by token."""
    tags = _START_TAG.findall(markup)
    long_tags = compress(tags, map((2 * MAX_TAG_ATTRIBUTES).__le__, map(len, tags)))
    return any(_flooded(tag, len(_TAG_NAME.match(tag).group(1))) for tag in long_tags)  # type: ignore[union-attr]


def tame_attribute_floods(markup: AnyStr) -> AnyStr:
    """HTML or XML (text, or bytes in an ASCII-compatible encoding) with the attributes of absurdly
    attribute-heavy tags removed (see MAX_TAG_ATTRIBUTES). Linear time; run it off the event loop."""
    pattern = _MARKUP_TOKEN_BYTES if isinstance(markup, bytes) else _MARKUP_TOKEN
    return pattern.sub(_tame_tag, markup)  # type: ignore[arg-type,return-value]
