"""Persistence of articles (by canonical URL, with aliases), their summaries, and model usage.

Races are settled by the database: articles are unique by canonical URL, summaries by (article,
language, prompt version). Writers insert with ON CONFLICT DO NOTHING and then read the winner, so two
processes summarizing the same link at once end up with one row and the same answer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, reduce
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    FromClause,
    Select,
    and_,
    bindparam,
    case,
    delete,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from ringkas.documents import Article, Summary, Usage, UsageContext
from ringkas.storage import Database, Write
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ArticleAliasRow, ArticleRow, ModelCallRow, SummaryRow
from ringkas.urls import without_query

log = logging.getLogger("ringkas.articles")

URL_COLUMN_LENGTH = 2048
_KEPT_OF_LONG_URL = 1900  # characters of an over-long URL kept in its key (see url_key)
_SUMMARY = "summary_"  # prefix of the summary columns in a link's lookup


def url_key(url: str) -> str:
    """The form of a URL as stored: over-long URLs keep a prefix plus a hash, so they stay unique."""
    if len(url) <= URL_COLUMN_LENGTH:
        return url
    digest = hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()
    return f"{url[:_KEPT_OF_LONG_URL]}#ringkas-sha256={digest}"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def _clip(value: str | None, length: int) -> str | None:
    return value[:length] if value is not None else None


def _storable(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters; pages and model replies occasionally carry them."""
    return value.replace("\x00", "") if value is not None else None


@dataclass(frozen=True)
class LinkLookup:
    """What one read found about a shared link (`ArticleStore.lookup`)."""

    article: Article | None  # the stored article the link leads to
    summaries: Mapping[str, Summary]  # that article's summaries for the prompt version asked, by language
    path_shared: bool  # a stored article's canonical URL has the link's scheme, host and path (or may have)
    values: Mapping[str, Any]  # what the extra selects read, by column name


class ArticleStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Link lookups by shape (how many URL keys, an over-long URL, the extra selects): see lookup.
        self._lookups: dict[tuple[Any, ...], tuple[tuple[Select[Any], ...], Select[Any]]] = {}

    def _insert(self, table: Any) -> Any:
        return sqlite_insert(table) if self.db.is_sqlite else postgresql_insert(table)

    # --- articles --------------------------------------------------------------------------------

    async def get(self, article_id: int) -> Article | None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(ArticleRow).where(ArticleRow.id == article_id))).first()
        return _article(row) if row is not None else None

    async def get_by_url(self, *urls: str) -> Article | None:
        """The article any of these URLs (as shared, or canonical) led to before, if stored.

        One round trip: articles stored under any of the URLs, and articles any of them is an alias of;
        the first URL that matches wins (its own article before the one it is an alias of)."""
        keys = list(dict.fromkeys(url_key(u) for u in urls if u))
        if not keys:
            return None
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(_best_match(keys))).first()
        return _article(row) if row is not None else None

    async def lookup(
        self, url: str, canonical: str, *, prompt_version: str, extra: Sequence[Select[Any]] = (),
        extra_params: Mapping[str, Any] | None = None,
    ) -> LinkLookup:
        """Everything a shared link needs read before its answer, in one statement: the article `url` or
        `canonical` leads to (ranked as in `get_by_url`) with its summaries for `prompt_version`, whether
        any stored article shares the canonical URL's path, and the columns of `extra`: one-row selects
        (aggregates, such as the limits' counts) whose column names are distinct, built once with bind
        parameters whose values are `extra_params`. The statement is built once per shape: building it
        cost more CPU than running it."""
        keys = list(dict.fromkeys(url_key(u) for u in (url, canonical) if u))
        base = without_query(canonical)
        long_url = len(base) >= _KEPT_OF_LONG_URL
        shape = (len(keys), long_url, tuple(map(id, extra)))
        known = self._lookups.get(shape)
        if known is None or any(a is not b for a, b in zip(known[0], extra, strict=True)):
            known = (tuple(extra), _lookup_statement(len(keys), long_url, extra))
            self._lookups[shape] = known
        params = {**(extra_params or {}), **{f"key_{i}": key for i, key in enumerate(keys)},
                  "prompt_version": prompt_version, "path_base": base, "path_from": base + "?",
                  "path_to": base + "@"}
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(known[1], params)).all()
        first = rows[0]  # the facts are one row, whether or not an article matched
        return LinkLookup(
            article=_article(first) if first.id is not None else None,
            summaries={row.summary_language: _summary(_unprefixed(row, _SUMMARY))
                       for row in rows if row.summary_id is not None},
            path_shared=bool(first.path_shared),
            values={column.name: first._mapping[column.name] for s in extra for column in s.selected_columns},
        )

    async def get_by_content(self, digest: str) -> Article | None:
        """The most recently fetched article whose stored text has this content hash."""
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(
                select(ArticleRow)
                .where(ArticleRow.content_hash == digest)
                .order_by(ArticleRow.fetched_at.desc())
                .limit(1)
            )).first()
        return _article(row) if row is not None else None

    async def save(self, article: Article, *, aliases: Iterable[str] = ()) -> Article:
        """Insert or refresh the article under its canonical URL; every alias then points to it.

        When the stored text differs (the page changed), the text is replaced and its summaries are
        dropped, since they describe the old text.
        """
        return (await self.save_article(article, aliases=aliases))[0]

    async def save_article(self, article: Article, *, aliases: Iterable[str] = ()) -> tuple[Article, bool]:
        """`save`, and whether the article is new here (then it has no summaries yet: none to look up)."""
        key = url_key(article.canonical_url or article.url)
        text = _storable(article.text) or ""
        digest = content_hash(text)
        values = {
            "canonical_url": key,
            "url": url_key(article.url),
            "title": _storable(article.title),
            "author": _storable(article.author),
            "published": _clip(_storable(article.published), 32),
            "site_name": _storable(article.site_name),
            "language": _clip(article.language, 16),
            "source_kind": _clip(article.source_kind, 16) or "html",
            "text": text,
            "content_hash": digest,
            "fetched_at": utcnow(),
        }
        alias_keys = sorted({url_key(a) for a in aliases if a} - {key})
        async with self.db.write() as conn:
            # A new article (the usual case) is stored and known by its id in one statement.
            article_id = await conn.scalar(_new_row(self.db.is_sqlite, "articles"), values)
            stored, created = values, article_id is not None
            if article_id is None:
                row = (await conn.execute(select(ArticleRow).where(ArticleRow.canonical_url == key))).first()
                if row is None:  # pragma: no cover - the insert or the conflicting row must exist
                    raise RuntimeError("article row vanished after upsert")
                article_id = row.id
                if row.content_hash != digest:
                    log.info("article text changed; refreshing it", extra={"article_id": row.id})
                    changed = {name: value for name, value in values.items() if name != "canonical_url"}
                    await conn.execute(update(ArticleRow).where(ArticleRow.id == row.id).values(**changed))
                    await conn.execute(delete(SummaryRow).where(SummaryRow.article_id == row.id))
                else:
                    stored = dict(row._mapping)
            if alias_keys:
                statement = self._insert(ArticleAliasRow).values(
                    [{"url": alias, "article_id": article_id, "created_at": utcnow()} for alias in alias_keys]
                )
                await conn.execute(statement.on_conflict_do_update(
                    index_elements=["url"], set_={"article_id": statement.excluded.article_id}
                ))
        return _article(SimpleNamespace(**{**stored, "id": article_id})), created

    # --- summaries -------------------------------------------------------------------------------

    async def get_summary(self, article_id: int, language: str, prompt_version: str) -> Summary | None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(
                select(SummaryRow).where(
                    SummaryRow.article_id == article_id,
                    SummaryRow.language == language,
                    SummaryRow.prompt_version == prompt_version,
                )
            )).first()
        return _summary(row) if row is not None else None

    async def save_summary(self, article_id: int, summary: Summary) -> Summary:
        """Store the summary unless another writer stored one for this key first; return the stored one."""
        values = {
            "article_id": article_id,
            "language": summary.language,
            "prompt_version": summary.prompt_version,
            "model": summary.model[:128],
            "title": _storable(summary.title),
            "tldr": _storable(summary.tldr),
            "key_points": [_storable(p) for p in summary.key_points],
            "why_it_matters": _storable(summary.why_it_matters),
            "prompt_tokens": summary.usage.prompt_tokens,
            "completion_tokens": summary.usage.completion_tokens,
            "model_calls": summary.usage.calls,
            "created_at": summary.created_at or utcnow(),
        }
        async with self.db.write() as conn:
            stored_id = await conn.scalar(_new_row(self.db.is_sqlite, "summaries"), values)
            if stored_id is not None:  # ours is the stored one: no need to read it back
                return _summary(SimpleNamespace(**values))
            row = (await conn.execute(
                select(SummaryRow).where(
                    SummaryRow.article_id == article_id,
                    SummaryRow.language == summary.language,
                    SummaryRow.prompt_version == summary.prompt_version,
                )
            )).first()
        if row is None:  # pragma: no cover
            raise RuntimeError("summary row vanished after upsert")
        return _summary(row)


_MODEL_CALL = insert(ModelCallRow)  # one statement for every usage row (the database's group commit)


async def record_model_call(
    db: Database,
    *,
    purpose: str,
    model: str,
    usage: Usage,
    context: UsageContext | None,
    article_id: int | None,
) -> None:
    """One row in `model_calls`. Bookkeeping must never break the answer, so failures are only logged."""
    row = {
        "purpose": purpose[:32], "model": model[:128], "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens, "article_id": article_id,
        "team_id": _clip(context.team_id, 32) if context else None,
        "channel_id": _clip(context.channel_id, 32) if context else None,
        "created_at": utcnow(),
    }
    try:
        await db.write_together([Write(_MODEL_CALL, row)])
    except (SQLAlchemyError, OSError) as exc:
        log.warning("could not record model usage", extra={"purpose": purpose, "error": type(exc).__name__})


@cache
def _new_row(is_sqlite: bool, table: str) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING RETURNING id` for a new article or summary, built once (values are
    bound at execution): the id, or None when the row was there already."""
    row, unique = {"articles": (ArticleRow, ["canonical_url"]),
                   "summaries": (SummaryRow, ["article_id", "language", "prompt_version"])}[table]
    statement = (sqlite_insert if is_sqlite else postgresql_insert)(row)
    return statement.on_conflict_do_nothing(index_elements=unique).returning(row.id)


def _best_match(keys: Sequence[Any]) -> CompoundSelect:
    """The one article the first of `keys` (values or bind parameters) that matches leads to: an article
    stored under it before one it is an alias of."""
    def ranked(matched: Any, via_alias: int) -> Select[Any]:
        rank = case(*((matched == key, i) for i, key in enumerate(keys)))
        return select(ArticleRow, rank.label("match_rank"), literal(via_alias).label("via_alias"))

    own = ranked(ArticleRow.canonical_url, 0).where(ArticleRow.canonical_url.in_(keys))
    aliased = (
        ranked(ArticleAliasRow.url, 1)
        .join(ArticleAliasRow, ArticleAliasRow.article_id == ArticleRow.id)
        .where(ArticleAliasRow.url.in_(keys))
    )
    return union_all(own, aliased).order_by("match_rank", "via_alias").limit(1)


def _path_shared(long_url: bool) -> ColumnElement[bool]:
    """Whether a stored article's canonical URL is the link's (`path_base`) up to its query: two index
    ranges on the unique canonical_url (the URL without a query, and the URL followed by "?…"), not a LIKE.
    `path_from` and `path_to` are `path_base` + "?" and + "@" ("@" follows "?" in byte order: every key
    that starts with base + "?" sorts in between)."""
    if long_url:
        return true()  # an over-long URL is stored cut (url_key): it may be there under another key
    stored = ArticleRow.canonical_url
    return or_(
        select(ArticleRow.id).where(stored == bindparam("path_base")).exists(),
        select(ArticleRow.id).where(stored >= bindparam("path_from"), stored < bindparam("path_to")).exists(),
    )


def _lookup_statement(keys: int, long_url: bool, extra: Sequence[Select[Any]]) -> Select[Any]:
    """A link's lookup (ArticleStore.lookup) for `keys` URL keys (`key_0`, …), with bind parameters."""
    facts = _facts(_path_shared(long_url).label("path_shared"), extra)
    best = _best_match([bindparam(f"key_{i}") for i in range(keys)]).subquery("link_article")
    summary_columns = [column.label(_SUMMARY + column.name) for column in SummaryRow.__table__.c]
    return select(facts, best, *summary_columns).select_from(
        facts.outerjoin(best, true()).outerjoin(
            SummaryRow,
            and_(SummaryRow.article_id == best.c.id,
                 SummaryRow.prompt_version == bindparam("prompt_version")),
        )
    )


def _facts(column: ColumnElement[Any], extra: Sequence[Select[Any]]) -> FromClause:
    """One row: `column` beside the columns of the one-row selects in `extra`."""
    parts = [part.subquery(f"link_count_{i}") for i, part in enumerate(extra)]
    row = select(column, *(c for part in parts for c in part.c))
    if parts:
        row = row.select_from(reduce(lambda joined, part: joined.join(part, true()), parts[1:], parts[0]))
    return row.subquery("link_facts")


def _unprefixed(row: Any, prefix: str) -> SimpleNamespace:
    return SimpleNamespace(**{name.removeprefix(prefix): value for name, value in row._mapping.items()
                              if name.startswith(prefix)})


def _article(row: Any) -> Article:
    return Article(
        url=row.url,
        canonical_url=row.canonical_url,
        text=row.text,
        title=row.title,
        author=row.author,
        published=row.published,
        site_name=row.site_name,
        language=row.language,
        source_kind=row.source_kind,
        id=row.id,
    )


def _summary(row: Any) -> Summary:
    return Summary(
        tldr=row.tldr,
        key_points=tuple(str(p) for p in (row.key_points or [])),
        why_it_matters=row.why_it_matters,
        language=row.language,
        model=row.model,
        prompt_version=row.prompt_version,
        title=row.title,
        usage=Usage(row.prompt_tokens, row.completion_tokens, row.model_calls),
        created_at=row.created_at,
    )
