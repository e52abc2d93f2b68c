"""Ringkas service: storage by canonical URL and alias, summary cache, single-flight, languages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ringkas.articles import ArticleStore
from ringkas.config import Settings
from ringkas.documents import Article, Summary, Usage, UsageContext
from ringkas.errors import InvalidURL, NotFound, SiteRefused
from ringkas.fetch import SafeFetcher
from ringkas.llm import LLM
from ringkas.service import Ringkas, SingleFlight
from ringkas.storage import Database
from ringkas.storage.tables import ArticleRow, ModelCallRow, SummaryRow
from tests.conftest import FIXTURES
from tests.support.openai_stub import request_text, summary_from_source

PAGES = FIXTURES / "summaries"
ID_PAGE = (PAGES / "berita-ai-id.html").read_text(encoding="utf-8")
EN_PAGE = (PAGES / "injection-en.html").read_text(encoding="utf-8")


@pytest.fixture
async def make_service(make_settings) -> AsyncIterator[Callable[..., Ringkas]]:
    made: list[Ringkas] = []

    def build(database: Database, **env: str) -> Ringkas:
        settings: Settings = make_settings(**env)
        fetcher = SafeFetcher(allow_hosts=settings.fetch_allow_hosts, timeout=10)
        service = Ringkas(settings=settings, db=database, fetcher=fetcher, llm=LLM(settings, db=database))
        made.append(service)
        return service

    yield build
    for service in made:
        await service.fetcher.aclose()
        await service.llm.aclose()


def _page(title: str, body: str, *, lang: str = "en", canonical: str | None = None) -> str:
    link = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    paragraphs = "".join(
        f"<p>{body} Sentence {i} adds detail about the launch and its price.</p>" for i in range(6)
    )
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>{link}</head>'
        f"<body><article><h1>{title}</h1>{paragraphs}</article></body></html>"
    )


async def _count(database: Database, table: type) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_second_request_is_a_cache_hit_with_zero_model_calls(
    openai_stub, web, database, make_service
) -> None:
    service = make_service(database)
    url = web.add("/news/chip", EN_PAGE)
    first = await service.summarize(url)
    assert first.cached is False
    assert first.article.id is not None
    assert len(openai_stub.requests) == 1

    second = await service.summarize(url)
    assert second.cached is True
    assert second.summary == first.summary
    assert len(openai_stub.requests) == 1  # no model call
    assert web.hits["/news/chip"] == 1  # no fetch either

    # A fresh process (new service, same database) also hits the cache.
    other = make_service(database)
    third = await other.summarize(url)
    assert third.cached is True and third.summary.tldr == first.summary.tldr
    assert len(openai_stub.requests) == 1
    assert await _count(database, SummaryRow) == 1


async def test_a_new_prompt_version_is_a_new_cache_key(
    openai_stub, web, database, make_service, tmp_path, monkeypatch
) -> None:
    """Editing a prompt file and bumping its version makes summaries again; the old ones stay keyed
    by the old version."""
    import shutil

    import ringkas.prompts as prompts

    url = web.add("/news/chip", EN_PAGE)
    first = await make_service(database).summarize(url)
    assert len(openai_stub.requests) == 1

    edited = tmp_path / "prompts"
    shutil.copytree(prompts.PROMPTS_DIR, edited)
    repair = edited / "llm_repair.md"  # even the repair request's wording is part of the key
    bumped = repair.read_text(encoding="utf-8").replace("version: 1", "version: 2")
    repair.write_text(bumped, encoding="utf-8")
    monkeypatch.setattr(prompts, "PROMPTS_DIR", edited)
    prompts.load_prompt.cache_clear()
    try:
        service = make_service(database)
        assert "llm_repair@2" in service.summarizer.prompt_version
        second = await service.summarize(url)
    finally:
        monkeypatch.undo()
        prompts.load_prompt.cache_clear()
    assert second.cached is False and second.summary.prompt_version != first.summary.prompt_version
    assert len(openai_stub.requests) == 2
    assert web.hits["/news/chip"] == 1  # the article itself is still stored
    assert await _count(database, SummaryRow) == 2


async def test_tracking_parameters_and_canonical_links_share_one_article(
    openai_stub, web, database, make_service
) -> None:
    service = make_service(database)
    canonical = web.url("/story")
    web.add("/amp/story", _page("Lab ships model", "The lab shipped a model.", canonical=canonical))
    shared = web.url("/amp/story?utm_source=slack&utm_medium=social")
    article = await service.get_article(shared)
    assert article.canonical_url == canonical
    assert article.id is not None

    again = await service.get_article(web.url("/amp/story?utm_campaign=other&fbclid=abc"))
    direct = await service.get_article(canonical)  # the canonical URL itself: no fetch of /story
    assert again.id == direct.id == article.id
    assert web.hits["/amp/story"] == 1
    assert web.hits["/story"] == 0
    assert await _count(database, ArticleRow) == 1


async def test_a_page_cannot_claim_another_sites_canonical_url(web, database, make_service) -> None:
    service = make_service(database)
    url = web.add("/evil", _page("Fake", "Fake news.", canonical="https://openai.com/blog/real-post"))
    article = await service.get_article(url)
    assert "openai.com" not in article.canonical_url
    assert await service.store.get_by_url("https://openai.com/blog/real-post") is None


async def test_fifty_concurrent_requests_share_one_fetch_and_one_model_call(
    openai_stub, web, database, make_service
) -> None:
    service = make_service(database)
    openai_stub.delay = 0.2
    url = web.add("/hot", EN_PAGE, delay=0.1)
    results = await asyncio.gather(*(service.summarize(url) for _ in range(50)))
    assert web.hits["/hot"] == 1
    assert len(openai_stub.requests) == 1
    assert len({r.summary.tldr for r in results}) == 1
    assert sum(not r.cached for r in results) == 1  # one did the work, 49 shared it
    assert await _count(database, SummaryRow) == 1
    assert await _count(database, ModelCallRow) == 1


async def test_concurrent_spellings_of_one_link_share_one_fetch_and_one_model_call(
    openai_stub, web, database, make_service
) -> None:
    service = make_service(database)
    openai_stub.delay = 0.2
    url = web.add("/hot", EN_PAGE, delay=0.1)
    spellings = [
        url,
        f"{url}?utm_source=slack&utm_medium=social",
        f"{url}?fbclid=abc123",
        f"  {url.replace('http://', 'HTTP://')}#comments  ",
        f"{url}?utm_campaign=x&gclid=y",
    ]
    results = await asyncio.gather(*(service.summarize(spellings[i % 5]) for i in range(50)))
    assert web.hits["/hot"] == 1
    assert len(openai_stub.requests) == 1
    assert len({r.article.id for r in results}) == 1
    assert await _count(database, ArticleRow) == 1 and await _count(database, SummaryRow) == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_work(
    openai_stub, web, database, make_service
) -> None:
    service = make_service(database)
    openai_stub.delay = 0.3
    url = web.add("/slow", EN_PAGE)
    impatient = asyncio.create_task(service.summarize(url))
    patient = asyncio.create_task(service.summarize(url))
    await asyncio.sleep(0.15)
    impatient.cancel()
    result = await patient
    assert result.summary.tldr
    assert len(openai_stub.requests) == 1


async def test_two_processes_racing_store_one_summary(openai_stub, web, database, make_service) -> None:
    counter = iter(range(100))

    def distinct(body: dict) -> str:
        n = next(counter)
        data = summary_from_source(body, {"properties": {"tldr": {}, "why_it_matters": {}}}) or {}
        data["tldr"] = f"{data.get('tldr')} Take {n}."  # each model run writes a different summary
        return json.dumps(data)

    openai_stub.responder = distinct
    openai_stub.delay = 0.1
    url = web.add("/race", EN_PAGE)
    one, two = make_service(database), make_service(database)
    article = await one.get_article(url)
    results = await asyncio.gather(one.summarize_article(article), two.summarize_article(article))
    stored = await one.store.get_summary(article.id, "en", one.summarizer.prompt_version)  # type: ignore[arg-type]
    assert stored is not None
    assert results[0].summary.tldr == results[1].summary.tldr == stored.tldr
    assert await _count(database, SummaryRow) == 1


async def test_summary_language_follows_settings_request_and_article(
    openai_stub, web, database, make_service
) -> None:
    service = make_service(database)  # SUMMARY_LANGUAGE=auto
    url = web.add("/id", ID_PAGE)
    result = await service.summarize(url)
    assert result.article.language == "id"
    assert result.summary.language == "id"
    assert "write every field in Indonesian" in request_text(openai_stub.requests[-1])

    english = await service.summarize(url, language="en")
    assert english.summary.language == "en" and english.cached is False
    assert "write every field in English" in request_text(openai_stub.requests[-1])
    assert (await service.summarize(url, language="id")).cached is True

    fixed = make_service(database, SUMMARY_LANGUAGE="en")
    assert (await fixed.summarize(url)).summary.language == "en"
    assert len(openai_stub.requests) == 2

    article = result.article
    assert service.resolve_language(article, None) == "id"
    assert service.resolve_language(article, "auto") == "id"
    assert service.resolve_language(article, "EN") == "en"
    assert service.resolve_language(Article(url="u", canonical_url="u", text="t"), "auto") == "en"
    assert fixed.resolve_language(article, None) == "en"


async def test_usage_is_recorded_with_the_requesting_team(openai_stub, web, database, make_service) -> None:
    service = make_service(database)
    url = web.add("/usage", EN_PAGE)
    result = await service.summarize(url, context=UsageContext(team_id="T9", channel_id="C9", user_id="U9"))
    async with database.session() as session:
        rows = (await session.scalars(select(ModelCallRow))).all()
    assert [(r.purpose, r.team_id, r.channel_id, r.article_id) for r in rows] == [
        ("summary", "T9", "C9", result.article.id)
    ]
    assert result.summary.usage.prompt_tokens == rows[0].prompt_tokens


async def test_fetch_failures_are_not_cached(openai_stub, web, database, make_service) -> None:
    service = make_service(database)
    url = web.add("/flaky", "gone", status=503, content_type="text/html")
    with pytest.raises(SiteRefused):
        await service.summarize(url)
    web.add("/flaky", EN_PAGE)
    result = await service.summarize(url)
    assert result.summary.tldr
    assert web.hits["/flaky"] == 2


async def test_local_files_only_when_allowed(openai_stub, database, make_service, tmp_path: Path) -> None:
    service = make_service(database)
    secret = tmp_path / "secret.txt"
    secret.write_text("Server secrets that a Slack message must never read.", encoding="utf-8")
    with pytest.raises(InvalidURL):
        await service.summarize(str(secret))
    with pytest.raises(InvalidURL):
        await service.extract(secret.as_uri())
    assert openai_stub.requests == []

    service.allow_local_files = True
    with pytest.raises(NotFound):
        await service.summarize(str(tmp_path / "missing.html"))
    page = tmp_path / "page.html"
    page.write_text(EN_PAGE, encoding="utf-8")
    first = await service.summarize(str(page))
    assert first.article.source_kind == "html" and first.article.canonical_url.startswith("file://")
    assert (await service.summarize(str(page))).cached is True
    # The file changed: its old summary no longer describes it.
    page.write_text(ID_PAGE, encoding="utf-8")
    changed = await service.summarize(str(page), language="en")
    assert changed.cached is False
    assert changed.article.id == first.article.id
    assert "Garuda-7B" in changed.article.text
    assert await _count(database, SummaryRow) == 1
    assert len(openai_stub.requests) == 2


async def test_extract_does_not_store(web, database, make_service) -> None:
    service = make_service(database)
    url = web.add("/x", EN_PAGE)
    article = await service.extract(url)
    assert article.id is None and "Helio" in article.text
    assert await _count(database, ArticleRow) == 0
    with pytest.raises(InvalidURL):
        await service.get_article("ftp://example.com/file")
    with pytest.raises(NotFound):
        await service.load_article(12345)


async def test_article_store_upserts_and_settles_summary_races(database) -> None:
    store = ArticleStore(database)
    base = Article(url="https://a.example/x?utm_source=y", canonical_url="https://a.example/x", text="v1")
    saved = await store.save(base, aliases=[base.url])
    again = await store.save(base, aliases=["https://a.example/x?ref=z"])
    assert saved.id == again.id
    assert (await store.get_by_url("https://a.example/x?ref=z")) == saved
    assert (await store.get_by_url(base.url)) == saved
    assert (await store.get(saved.id)) == saved

    def summary(tldr: str) -> Summary:
        return Summary(
            tldr=tldr,
            key_points=("a",),
            why_it_matters="w",
            language="en",
            model="m",
            prompt_version="summary@1+summary_user@1",
            usage=Usage(10, 5, 1),
        )

    assert saved.id is not None
    first = await store.save_summary(saved.id, summary("first"))
    second = await store.save_summary(saved.id, summary("second"))
    assert first.tldr == second.tldr == "first"
    assert (await store.get_summary(saved.id, "en", "summary@1+summary_user@1")) == first
    assert await store.get_summary(saved.id, "id", "summary@1+summary_user@1") is None

    nul = await store.save(
        Article(url="https://a.example/nul", canonical_url="https://a.example/nul", text="a\x00b")
    )
    assert nul.text == "ab"  # PostgreSQL text cannot hold NUL

    long_url = "https://a.example/" + "p" * 3000
    stored = await store.save(Article(url=long_url, canonical_url=long_url, text="long"))
    assert (await store.get_by_url(long_url)) == stored


async def test_single_flight_shares_results_and_errors() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(flights.run("k", work) for _ in range(10)))
    assert calls == 1
    assert [value for value, _ in results] == [42] * 10
    assert sum(leader for _, leader in results) == 1
    assert len(flights) == 0

    async def boom() -> int:
        raise RuntimeError("fail")

    with pytest.raises(RuntimeError):
        await flights.run("k", boom)
    assert (await flights.run("k", work))[0] == 42  # a failure is not remembered


async def test_another_model_makes_its_own_summary(openai_stub, web, database, make_service) -> None:
    url = web.add("/model-switch", EN_PAGE)
    first = await make_service(database).summarize(url)
    switched = make_service(database, OPENAI_MODEL="/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    second = await switched.summarize(url)
    assert first.cached is False and second.cached is False  # OPENAI_MODEL is part of the cache key
    assert second.summary.model == "SmolLM2-135M-Instruct.Q4_1"  # footers show a short name, not the path
    assert (await switched.summarize(url)).cached is True
    assert (await make_service(database).summarize(url)).summary.model == "gpt-4.1-mini"
