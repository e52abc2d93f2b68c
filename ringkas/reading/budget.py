"""An element and attribute budget checked on the markup before it is parsed.

Parsing and extracting cost grows with the number of elements and attributes, and so does memory:
8 MB of `<p>a</p>` is a million elements, 5,000 tags of 199 attributes are a million attributes
(+1.8 GB in lxml and trafilatura). Real pages stay far below the limits: the 300 pages of the
extraction development set have at most ~10,000 start tags and ~9,000 `=` signs, and a very long
real page (a big encyclopedia article) has some 60,000 elements.
"""

from __future__ import annotations

import re

from ringkas.errors import TooComplex

MAX_ELEMENTS = 200_000
MAX_ATTRIBUTES = 400_000

#: A start tag with its quoted attribute values (so `title='<x>'` is not a tag), read possessively.
_START_TAG = re.compile(r"<[a-zA-Z](?:[^>\"']++|\"[^\"]*+\"|'[^']*+')*+")
#: A start tag up to its end, read possessively so each character is looked at once.
_TAG_BODY = re.compile(r"<[a-zA-Z][^>]*+")


def check_element_budget(html: str) -> None:
    """The element half of the budget alone: cheap enough to run before anything else reads the markup."""
    if html.count("<") <= MAX_ELEMENTS:
        return
    for elements, _ in enumerate(_START_TAG.finditer(html), start=1):
        if elements > MAX_ELEMENTS:
            raise TooComplex(detail=f"markup over budget: >{MAX_ELEMENTS} elements")


def check_markup_budget(html: str) -> None:
    """Raise TooComplex when the markup has more elements or attributes than the budget allows.

    The first test counts `<`, `=` and spaces anywhere (C speed, a few ms for 10 MB); only a document over
    those rough counts is scanned tag by tag, so text and scripts do not count against it.
    """
    if html.count("<") <= MAX_ELEMENTS and html.count("=") + html.count(" ") <= MAX_ATTRIBUTES:
        return
    attributes = 0
    for elements, match in enumerate(_TAG_BODY.finditer(html), start=1):
        tag = match.group()
        attributes += max(tag.count("="), tag.count(" "))  # `a=1 b=2` and bare `a b` attributes
        if elements > MAX_ELEMENTS or attributes > MAX_ATTRIBUTES:
            raise TooComplex(detail=f"markup over budget: >{elements} elements, >{attributes} attributes")
