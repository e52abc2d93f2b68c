"""Hostile HTML: pages built to make the parser quadratic or to crash metadata reading."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ringkas.documents import FetchResult
from ringkas.extract import extract_article
from ringkas.fetch import MAX_TAG_ATTRIBUTES, SafeFetcher, tame_attribute_floods
from tests.support.web_stub import WebStub

PARAGRAPH = (
    "<p>The lab released its model weights under an open licence on Tuesday, and developers began "
    "testing the model on coding tasks within hours. Early results matched the published claims.</p>"
)
FLOOD = "<div " + " ".join(f"data-a{i}='<x>'" for i in range(200_000)) + ">flooded</div>"


def page(extra: str = "", head: str = "") -> str:
    return (
        f"<!doctype html><html lang='en'><head><title>Open weights</title>{head}</head><body><article>"
        + PARAGRAPH * 4 + extra + PARAGRAPH + "</article><div class='related-posts'><p>Read also: another "
        "story about something else entirely, with enough words to be noticed.</p></div></body></html>"
    )


def fetched(html: str) -> FetchResult:
    url = "https://news.example/open-weights"
    return FetchResult(url, url, 200, "text/html", "utf-8", html.encode(), {})


def test_attribute_flood_costs_linear_time() -> None:
    # In a child process so that a regression fails on the timeout instead of stalling the whole run:
    # libxml2 compares every attribute with every earlier one while holding the GIL.
    probe = (
        "from tests.test_security_extract import page, FLOOD, fetched\n"
        "from ringkas.extract import extract_article\n"
        "article = extract_article(fetched(page(FLOOD)))\n"
        "print(article.text.count('The lab released'))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60, check=True)
    assert done.stdout.strip() == b"5"


async def test_flooded_page_through_the_fetcher_keeps_its_text_and_boilerplate_rules(web: WebStub) -> None:
    fetcher = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=10)
    try:
        url = web.add("/flood", page(FLOOD))
        article = extract_article(await fetcher.fetch(url))
    finally:
        await fetcher.aclose()
    assert article.text.count("The lab released") == 5
    assert "Read also" not in article.text  # ordinary class names still steer the pruning


@pytest.mark.parametrize(
    "wrapper",
    [
        "{flood}",
        "<script></b>{flood}",  # a script the parser may end at "</b" must not hide the flood
        "<!--> {flood} -->",  # "<!-->" is a whole comment to an HTML5 parser
        "<p title=\"a>b\" {flood_attrs}>x</p>",
    ],
)
def test_flooded_tags_lose_their_attributes_wherever_they_hide(wrapper: str) -> None:
    attrs = " ".join(f"a{i}" for i in range(MAX_TAG_ATTRIBUTES + 1))
    html = wrapper.format(flood=f"<div {attrs}>x</div>", flood_attrs=attrs)
    tamed = tame_attribute_floods(html)
    assert "a200" not in tamed and "x<" in tamed


def test_ordinary_markup_is_left_alone() -> None:
    html = (
        "<div class='a' id=b data-x=5\"foot>t</div><script>if (a<b) { s = '<i ' + 'y '.repeat(300) }</script>"
        "<svg><path d='" + "M0 0 L1 1 " * 2000 + "'/></svg><img src=\"a>b\" alt='c'>"
        + "<span " + " ".join(f"a{i}" for i in range(MAX_TAG_ATTRIBUTES)) + ">ok</span>"
    )
    assert tame_attribute_floods(html) == html


def test_deeply_nested_json_ld_is_ignored_not_fatal() -> None:
    bomb = "<script type='application/ld+json'>" + "[" * 100_000 + "]" * 100_000 + "</script>"
    article = extract_article(fetched(page(head=bomb)))
    assert article.title == "Open weights" and "The lab released" in article.text
