"""Cache poisoning through rel=canonical on shared hosts (medium.com/@name, blog platforms, forums).

A page may only claim another rendering of itself as canonical. Otherwise an author on a shared host
could publish a page claiming a colleague's URL there: it would be stored under that URL, answer for it
from the cache, and even replace the colleague's stored text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from ringkas.fetch import SafeFetcher
from ringkas.llm import LLM
from ringkas.service import Ringkas
from ringkas.storage import Database
from ringkas.urls import same_document


@pytest.fixture
async def make_service(make_settings) -> AsyncIterator[Callable[[Database], Ringkas]]:
    made: list[Ringkas] = []

    def build(database: Database) -> Ringkas:
        settings = make_settings()
        fetcher = SafeFetcher(allow_hosts=settings.fetch_allow_hosts, timeout=10)
        service = Ringkas(settings=settings, db=database, fetcher=fetcher, llm=LLM(settings, db=database))
        made.append(service)
        return service

    yield build
    for service in made:
        await service.fetcher.aclose()
        await service.llm.aclose()


def _page(title: str, sentence: str, canonical: str | None = None) -> str:
    link = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    paragraphs = "".join(f"<p>{sentence} Paragraph {i} gives more detail on the claim.</p>" for i in range(6))
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>{link}</head>'
        f"<body><article><h1>{title}</h1>{paragraphs}</article></body></html>"
    )


async def test_a_page_cannot_claim_another_authors_url_on_the_same_host(web, database, make_service) -> None:
    service = make_service(database)
    victim_url = web.add("/@victim/real-story", _page("Real story", "The lab released an open model today."))
    evil_url = web.add(
        "/@attacker/post", _page("Lab admits fraud", "The lab admitted it faked every benchmark.", victim_url)
    )
    first = await service.get_article(victim_url)
    poisoned = await service.get_article(evil_url)
    assert poisoned.canonical_url == evil_url and poisoned.id != first.id

    again = await service.get_article(victim_url)
    assert again.id == first.id
    assert "released an open model" in again.text and "faked" not in again.text


async def test_the_claim_cannot_answer_for_a_url_never_fetched(web, database, make_service) -> None:
    service = make_service(database)
    victim_url = web.add("/@victim/other-story", _page("Other story", "Chip exports rose in May."))
    evil_url = web.add("/@attacker/p2", _page("Fake", "Chip exports were banned outright.", victim_url))
    await service.get_article(evil_url)
    article = await service.get_article(victim_url)
    assert web.hits["/@victim/other-story"] == 1
    assert "rose in May" in article.text


@pytest.mark.parametrize(
    ("claim", "url", "same"),
    [
        ("https://news.example/story", "https://amp.news.example/amp/story?amp=1&utm_source=x", True),
        ("https://www.news.example/story/", "http://m.news.example/story.amp", True),
        ("https://news.example/story", "https://news.example/story?id=7", True),
        ("https://news.example/story?id=7", "https://news.example/story", False),
        ("https://medium.example/@victim/post", "https://medium.example/@evil/post", False),
        ("https://medium.example/@evil/post", "https://medium.example/@evil/post/amp", True),
        ("https://victim.blogs.example/p/1", "https://evil.blogs.example/p/1", False),
        ("https://news.example/p/123", "https://news.example/p/124", False),
        ("https://news.example:8443/story", "https://news.example/story", False),
    ],
)
def test_same_document(claim: str, url: str, same: bool) -> None:
    assert same_document(claim, url) is same
