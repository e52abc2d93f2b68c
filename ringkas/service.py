"""The summarizing pipeline behind Slack and the terminal: fetch → extract → store → summarize → cache.

- Articles are stored by canonical URL; every URL that led to one (as shared, canonicalised, after
  redirects) is an alias, so sharing the same link again costs no fetch.
- A summary is keyed by (article, language, prompt version + model): once made it is never made again;
  another OPENAI_MODEL makes its own.
- Concurrent requests for one link share one fetch and one model run (in-process single-flight); the
  database's unique constraints settle races between processes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import unquote, urlsplit

from ringkas.articles import ArticleStore, LinkLookup, content_hash
from ringkas.config import Settings
from ringkas.documents import Article, Summary, SummaryResult, UsageContext
from ringkas.errors import InvalidURL, NotFound
from ringkas.fetch import SafeFetcher
from ringkas.language import normalize_language
from ringkas.limits import LimitGuard
from ringkas.llm import LLM
from ringkas.reading import DocumentReader
from ringkas.storage import Database
from ringkas.summarize import Summarizer
from ringkas.urls import canonicalize, is_http_url, same_path, same_site, without_query

log = logging.getLogger("ringkas.service")

T = TypeVar("T")
DEFAULT_LANGUAGE = "en"
MIN_WORDS_FOR_TEXT_MATCH = 80
NO_SOURCE = "Give me a web link (http or https) or the path of a local HTML, PDF or text file."
_OTHER_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]+:/", re.IGNORECASE)  # not "C:/" (a Windows drive)


class SingleFlight(Generic[T]):
    """Runs one task per key at a time; callers arriving meanwhile await the same result.

    The work runs in its own task and callers await it shielded, so a caller that gives up (a Slack
    deadline, a cancelled request) does not cancel the work the others are waiting for.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, key: Hashable) -> bool:
        return key in self._tasks

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result, and whether this caller started the work (False: it joined a running one)."""
        task = self._tasks.get(key)
        leader = task is None
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task), leader

    def _finished(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter may have given up already


class Ringkas:
    def __init__(self, *, settings: Settings, db: Database, fetcher: SafeFetcher, llm: LLM) -> None:
        self.settings = settings
        self.db = db
        self.fetcher = fetcher
        self.llm = llm
        self.summarizer = Summarizer(llm, max_calls=settings.max_model_calls_per_article)
        self.store = ArticleStore(db)
        # Fetched documents are parsed in limited worker processes, started on first use.
        self.reader = DocumentReader(deadline=settings.fetch_timeout)
        # Cost limits (ringkas/limits), set by the wiring for the Slack app; the terminal has none.
        self.limits: LimitGuard | None = None
        # Local files are for the terminal commands only: a Slack message must never read server files.
        self.allow_local_files = False
        self._article_flights: SingleFlight[tuple[Article, bool]] = SingleFlight()
        self._summary_flights: SingleFlight[Summary] = SingleFlight()
        self._request_flights: SingleFlight[SummaryResult] = SingleFlight()

    async def aclose(self) -> None:
        await self.reader.aclose()

    # --- articles --------------------------------------------------------------------------------

    async def extract(self, source: str) -> Article:
        """The article at a URL or in a local file, freshly fetched and extracted; not stored."""
        if is_http_url(source):
            fetched = await self.fetcher.fetch(source.strip())
            article = await self.reader.read(fetched)
            return self._checked_canonical(article, fetched.final_url)
        return await self._file_article(source)

    async def get_article(self, url: str) -> Article:
        """The stored article for a link, fetching and storing it on first sight (article.id is set)."""
        url = url.strip()
        if not is_http_url(url):
            raise InvalidURL()
        canonical = canonicalize(url)
        stored = await self.store.get_by_url(url, canonical)
        if stored is not None:
            return stored
        (found, _new), _leader = await self._article_flights.run(
            canonical, lambda: self._fetch_and_store(url, canonical)
        )
        return found

    async def load_article(self, article_id: int) -> Article:
        article = await self.store.get(article_id)
        if article is None:
            raise NotFound("I couldn't find that article any more.")
        return article

    async def _fetch_and_store(
        self, url: str, canonical: str, *, path_shared: bool = True
    ) -> tuple[Article, bool]:
        """`path_shared`: False when the link's lookup found no stored article at the canonical URL's
        path (whatever the query); then an article whose canonical URL has that path has no twin to find."""
        # Not looked up again here: a flight that ended between the caller's lookup and this one costs a
        # second fetch at worst, and `save` keeps one row per canonical URL either way.
        fetched = await self.fetcher.fetch(url)
        article = await self.reader.read(fetched)
        article = self._checked_canonical(article, fetched.final_url)
        aliases = [url, canonical, fetched.final_url, canonicalize(fetched.final_url)]
        alone = not path_shared and without_query(article.canonical_url) == without_query(canonical)
        twin = None if alone else await self._same_text_elsewhere(article)
        if twin is not None:
            # the same page under a parameter that changes nothing (?ref=…, a session id): reuse it, and its
            # summaries, instead of paying for the same text again
            log.info("article known by its text", extra={"article_id": twin.id})
            return await self.store.save(twin, aliases=aliases), False
        saved, created = await self.store.save_article(article, aliases=aliases)
        log.info(
            "article stored",
            extra={"article_id": saved.id, "words": saved.word_count, "language": saved.language},
        )
        return saved, created

    async def _same_text_elsewhere(self, article: Article) -> Article | None:
        """A stored article at the same path (only the query differs) with exactly this text and title,
        and enough text to be a page rather than a stub."""
        if article.word_count < MIN_WORDS_FOR_TEXT_MATCH:
            return None
        twin = await self.store.get_by_content(content_hash(article.text.replace("\x00", "")))
        if twin is None or not same_path(twin.canonical_url, article.canonical_url):
            return None  # another path may belong to another author (shared hosts): never merged
        if (twin.title or "").strip() != (article.title or "").strip():
            return None  # same body under another headline: another page (a template, a series)
        return twin

    @staticmethod
    def _checked_canonical(article: Article, final_url: str) -> Article:
        """Honour rel=canonical only within the same site: a page must not claim another site's URL
        (that would let it answer for that site's link from the cache)."""
        canonical = article.canonical_url
        if canonical and is_http_url(canonical) and same_site(canonical, final_url):
            return article
        return replace(article, canonical_url=canonicalize(final_url))

    async def _file_article(self, source: str) -> Article:
        if not self.allow_local_files:
            raise InvalidURL()
        if not source.strip():
            raise InvalidURL(NO_SOURCE)
        if _OTHER_SCHEME.match(source.strip()) and not source.strip().lower().startswith("file://"):
            raise InvalidURL()  # ftp://…, https:// without a host: a link, but not one we can open
        path = _local_path(source)
        if not path.is_file():
            raise NotFound(f"There is no file at {source}.")
        # Imported here: extraction (trafilatura, lxml, the language model's code) runs in the reader's
        # worker processes; this process needs it only for local files (terminal commands).
        from ringkas.extract import article_from_file

        return await asyncio.to_thread(article_from_file, path)

    # --- summaries -------------------------------------------------------------------------------

    async def summarize(
        self, source: str, *, language: str | None = None, context: UsageContext | None = None
    ) -> SummaryResult:
        """Summary of a link (or, for terminal commands, a local file), from the cache when possible.

        A shared link is admitted here (its sharer's link limit), and read with one statement: its
        article and summaries together with what its limits count (`_look_up`)."""
        source = source.strip()
        if not is_http_url(source):
            if self.limits is not None:
                await self.limits.admit_link(context)
            article = await self._file_article(source)
            article = await self.store.save(article, aliases=[article.url])
            return await self.summarize_article(article, language=language, context=context)

        canonical = canonicalize(source)
        key = (canonical, language)
        found: LinkLookup | None = None
        if self._request_flights.running(key):
            # joining a request for the same link that is under way: it reads and answers for both
            if self.limits is not None:
                await self.limits.admit_link(context)
        else:
            found, context = await self._look_up(source, canonical, context)

        async def work() -> SummaryResult:
            # found is None only when the request joined had ended meanwhile: read the link now
            looked_up = found or await self.store.lookup(
                source, canonical, prompt_version=self.summarizer.prompt_version
            )
            if looked_up.article is not None:
                return await self.summarize_article(looked_up.article, language=language, context=context,
                                                    stored=looked_up.summaries)
            (article, new), _leader = await self._article_flights.run(
                canonical, lambda: self._fetch_and_store(source, canonical, path_shared=looked_up.path_shared)
            )
            return await self.summarize_article(article, language=language, context=context, new=new)

        result, leader = await self._request_flights.run(key, work)
        if leader or result.cached:
            return result
        return SummaryResult(article=result.article, summary=result.summary, cached=True)

    async def _look_up(
        self, url: str, canonical: str, context: UsageContext | None
    ) -> tuple[LinkLookup, UsageContext | None]:
        """The link's one read, with what its limits count; refuses a link over its sharer's limit and
        returns the context carrying today's token use (for the first budget check of its model calls)."""
        check = self.limits.link_check(context) if self.limits is not None else None
        found = await self.store.lookup(url, canonical, prompt_version=self.summarizer.prompt_version,
                                        extra=check.selects if check is not None else (),
                                        extra_params=check.params if check is not None else None)
        if check is not None:
            context = await check.admit(found.values)
        return found, context

    async def summarize_article(
        self, article: Article, *, language: str | None = None, context: UsageContext | None = None,
        new: bool = False, stored: Mapping[str, Summary] | None = None,
    ) -> SummaryResult:
        """`new`: the article was stored just now, so no summary of it can be stored (none is looked up).
        `stored`: its summaries for the current prompt version by language, as already read."""
        code = self.resolve_language(article, language)
        if article.id is None:
            article = await self.store.save(article, aliases=[article.url])
        assert article.id is not None
        version = self.summarizer.prompt_version
        if new:
            cached = None
        elif stored is not None:
            cached = stored.get(code)
        else:
            cached = await self.store.get_summary(article.id, code, version)
        if cached is not None:
            log.info("summary from cache", extra={"article_id": article.id, "language": code})
            return SummaryResult(article=article, summary=cached, cached=True)
        key = (article.id, code, version)
        summary, leader = await self._summary_flights.run(
            key, lambda: self._summarize_and_store(article, code, version, context)
        )
        return SummaryResult(article=article, summary=summary, cached=not leader)

    async def _summarize_and_store(
        self, article: Article, language: str, version: str, context: UsageContext | None
    ) -> Summary:
        assert article.id is not None
        summary = await self.summarizer.summarize(article, language, context=context)
        return await self.store.save_summary(article.id, summary)

    def resolve_language(self, article: Article, requested: str | None) -> str:
        """The language code to write in: the request, else SUMMARY_LANGUAGE; "auto" = the article's own."""
        wanted = (requested or self.settings.summary_language or "auto").strip()
        if wanted.lower() == "auto":
            return normalize_language(article.language) or DEFAULT_LANGUAGE
        return normalize_language(wanted) or DEFAULT_LANGUAGE


def _local_path(source: str) -> Path:
    if source.lower().startswith("file://"):
        return Path(unquote(urlsplit(source).path)).expanduser()
    return Path(source).expanduser()
