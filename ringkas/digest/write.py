"""Writing the digest with the model, in a handful of calls.

1. One overview call over the candidate headlines: the opening line, stories that report the same event
   (also across languages, which headline matching cannot see) and, with enough stories, theme labels.
2. Story lines in batches (run concurrently) for the stories that remain after merging and trimming;
   team-shared articles with a stored summary in the digest language reuse it and cost nothing.

3. Every written line is checked (`checks.py`): a line about another story, a headline used for several
   stories or an opening that is not a sentence is not used. Stories left without a line get one more
   request, then their feed title and description, marked (`from_feed`): the digest never fails because
   of the model.

Calls per digest: 1 + ceil(stories needing text / batch), plus retries within `call_budget` (3 + stories
/ 12; the LLM's own repair request for a malformed answer counts too). Every request's messages are
counted with the model's tokenizer and kept under the LLM's input budget (MAX_INPUT_TOKENS): batches are
split by token count, and an item too long on its own has its excerpt cut.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ringkas.digest.checks import belongs, plausible_opening
from ringkas.digest.models import Story
from ringkas.digest.select import merge_stories
from ringkas.documents import Usage, UsageContext
from ringkas.errors import RingkasError
from ringkas.language import language_name
from ringkas.prompts import load_prompt, prompt_set_version

log = logging.getLogger("ringkas.digest.write")

MAX_BATCH = 12  # stories per call: keeps answers short enough to stay well-formed
MAX_THEMES = 4
MIN_STORIES_FOR_THEMES = 6
OUTPUT_TOKENS_PER_STORY = 170
EXCERPT_TOKENS = 220
FALLBACK_CHARS = 300  # of a feed description shown when the model gave no usable line
_SPACES = re.compile(r"\s+")
PROMPT_VERSION_NAMES = ("digest_system", "digest_stories", "digest_overview_themes", "digest_overview_plain")

STORIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "stories": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "headline": {"type": "string"},
                    "summary": {"type": "string"},
                },
                "required": ["id", "headline", "summary"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["stories"],
    "additionalProperties": False,
}


def _overview_schema(themed: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": {"type": "integer"}, "same_as": {"type": "integer"}}
    if themed:
        entry["theme"] = {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "opening": {"type": "string"},
            "stories": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": entry,
                    "required": list(entry),
                    "additionalProperties": False,
                },
            },
        },
        "required": ["opening", "stories"],
        "additionalProperties": False,
    }


OVERVIEW_THEMES_SCHEMA = _overview_schema(True)
OVERVIEW_PLAIN_SCHEMA = _overview_schema(False)


class TokenCounting(Protocol):
    def count(self, text: str) -> int: ...
    def count_messages(self, messages: list[dict]) -> int: ...
    def truncate(self, text: str, max_tokens: int) -> str: ...


class Model(Protocol):
    model: str
    tokens: TokenCounting
    max_input_tokens: int

    def input_budget(self, schema: dict | None = None) -> int: ...

    async def complete(self, messages: list[dict], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Written:
    opening: str
    stories: list[Story]  # after merging duplicates and trimming, best first
    usage: Usage
    model: str | None
    calls: int


def _clean(text: object, limit: int) -> str:
    if not isinstance(text, str):
        return ""
    text = _SPACES.sub(" ", text).strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text


class DigestWriter:
    def __init__(self, llm: Model) -> None:
        self.llm = llm
        self.prompt_version = prompt_set_version(*PROMPT_VERSION_NAMES)

    async def write(
        self, candidates: Sequence[Story], *, language: str, max_stories: int,
        context: UsageContext | None = None,
    ) -> Written:
        """Merge same-event candidates, keep the best `max_stories`, and write their lines and the opening.

        Fills each kept story's `summary` (unless reused), `title` (in the digest language) and `theme`.
        Never fails because of the model: a story the model skipped, or wrote about another story, gets
        its feed title and description (`from_feed`); a failed overview costs only the opening and themes.
        """
        if not candidates:
            return Written(opening="", stories=[], usage=Usage(), model=None, calls=0)
        for story in candidates:
            story.feed_title = story.feed_title or story.title
        boundary = f"items-{secrets.token_hex(6)}"
        system = {"role": "system", "content": load_prompt("digest_system").render(
            language=language_name(language), boundary=boundary)}
        ids = {index + 1: story for index, story in enumerate(candidates)}
        usage, model, opening, duplicates, themes, calls = await self._overview(
            system, ids, language, boundary, context)
        kept = self._merge(ids, duplicates)
        kept = dict(list(kept.items())[:max_stories])
        self._apply_themes(kept, themes)
        budget = call_budget(len(kept))
        to_write = [(i, s) for i, s in kept.items() if not s.reused_summary]
        pending = to_write
        for attempt in range(2):  # the first pass, then one more try for what the model skipped
            batches = self._batches(system, pending, language=language, boundary=boundary)
            if attempt:
                batches = batches[: max(0, budget - calls)]
                if not batches:
                    break
                log.warning("model skipped digest stories; asking again",
                            extra={"missing": len(pending), "requests": len(batches)})
            results = await asyncio.gather(
                *(self._write_batch(system, batch, kept, language, boundary, context) for batch in batches)
            )
            for batch_usage, batch_model, batch_calls in results:
                usage, calls = usage + batch_usage, calls + batch_calls
                model = model or batch_model
            pending = [(i, s) for i, s in pending if not s.summary]
            if not pending:
                break
        for _, story in pending:
            fall_back_to_feed(story)
        # one written headline over several stories (across batches too): each keeps its feed's own
        written_titles = Counter(story.title.casefold() for _, story in to_write)
        for _, story in to_write:
            if written_titles[story.title.casefold()] > 1 and story.feed_title:
                story.title = story.feed_title
        if pending:
            log.warning("digest stories shown with their feed text", extra={"stories": len(pending)})
        return Written(opening=opening, stories=list(kept.values()), usage=usage, model=model, calls=calls)

    @staticmethod
    def _merge(ids: dict[int, Story], duplicates: dict[int, int]) -> dict[int, Story]:
        """Fold stories the model marked as the same event into the earlier (better ranked) one."""
        kept: dict[int, Story] = {}
        for index, story in ids.items():
            target = duplicates.get(index, 0)
            seen: set[int] = set()
            while target in duplicates and target not in seen:  # follow chains to the first report
                seen.add(target)
                target = duplicates[target]
            if 0 < target < index and target in kept:
                merge_stories(kept[target], story)
            else:
                kept[index] = story
        return kept

    # --- batching ------------------------------------------------------------------------------

    def _item(self, index: int, story: Story, excerpt_tokens: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": index,
            "headline": self.llm.tokens.truncate(story.title, 60),
            "sources": [source.name for source in story.sources][:5],
        }
        if story.team_shared:
            item["shared_by_team"] = True
        if story.hint:
            item["known_summary"] = self.llm.tokens.truncate(story.hint, excerpt_tokens)
        if story.excerpt:
            item["excerpt"] = self.llm.tokens.truncate(story.excerpt, excerpt_tokens)
        return item

    def _stories_messages(self, system: dict, items: list[dict], language: str, boundary: str) -> list[dict]:
        lines = "\n".join(json.dumps(item, ensure_ascii=False) for item in items)
        user = load_prompt("digest_stories").render(
            language=language_name(language), boundary=boundary, items=lines
        )
        return [system, {"role": "user", "content": user}]

    def _batches(
        self, system: dict, stories: list[tuple[int, Story]], *, language: str, boundary: str
    ) -> list[list[dict]]:
        """Items grouped so that each request's messages fit under the input cap."""
        cap = self.llm.input_budget(STORIES_SCHEMA)
        batches: list[list[dict]] = []
        current: list[dict] = []
        for index, story in stories:
            item = self._item(index, story, EXCERPT_TOKENS)
            trial = [*current, item]
            if len(trial) <= MAX_BATCH and self._fits(system, trial, language, boundary, cap):
                current = trial
                continue
            if current:
                batches.append(current)
            current = [self._fit_alone(system, index, story, language, boundary, cap)]
        if current:
            batches.append(current)
        return batches

    def _fits(self, system: dict, items: list[dict], language: str, boundary: str, cap: int) -> bool:
        messages = self._stories_messages(system, items, language, boundary)
        return self.llm.tokens.count_messages(messages) <= cap

    def _fit_alone(self, system: dict, index: int, story: Story, language: str, boundary: str,
                   cap: int) -> dict:
        """One story that is too long for a request of its own: shorten its excerpt until it fits."""
        for budget in (EXCERPT_TOKENS, 100, 40, 0):
            item = self._item(index, story, budget)
            if budget == 0:
                item.pop("excerpt", None)
                item.pop("known_summary", None)
                item["headline"] = self.llm.tokens.truncate(story.title, 20)
            if self._fits(system, [item], language, boundary, cap):
                return item
        raise ValueError("MAX_INPUT_TOKENS is too small for the digest prompt")

    # --- model calls ---------------------------------------------------------------------------

    async def _write_batch(
        self, system: dict, items: list[dict], ids: dict[int, Story], language: str, boundary: str,
        context: UsageContext | None,
    ) -> tuple[Usage, str | None, int]:
        """One request for a batch; only lines that pass the checks are kept. Returns (usage, model,
        calls made). A request that fails leaves its stories without text (the caller falls back)."""
        messages = self._stories_messages(system, items, language, boundary)
        try:
            completion = await self.llm.complete(
                messages, purpose="digest", schema=STORIES_SCHEMA, schema_name="digest_stories",
                max_output_tokens=OUTPUT_TOKENS_PER_STORY * len(items) + 100, context=context, salvage=True,
            )
        except RingkasError as exc:
            log.warning("digest batch failed", extra={"stories": len(items), "error": exc.code})
            return Usage(), None, 1
        wanted = {item["id"] for item in items}
        answers: dict[int, tuple[str, str]] = {}
        entries = (completion.data or {}).get("stories", []) if isinstance(completion.data, dict) else []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("id") not in wanted or entry["id"] in answers:
                continue
            summary = _clean(entry.get("summary"), 420)
            if summary:
                answers[entry["id"]] = (_clean(entry.get("headline"), 160), summary)
        # the checks detect languages (py3langid, a model load on first use): off the event loop
        await asyncio.to_thread(accept_lines, answers, {index: ids[index] for index in wanted}, language)
        return completion.usage, completion.model, max(1, completion.usage.calls)

    async def _overview(
        self, system: dict, ids: dict[int, Story], language: str, boundary: str, context: UsageContext | None
    ) -> tuple[Usage, str | None, str, dict[int, int], dict[int, str], int]:
        themed = len(ids) >= MIN_STORIES_FOR_THEMES
        messages, listed = self._overview_messages(system, ids, language, boundary, themed=themed)
        if themed and listed < len(ids):  # too many headlines for the cap: no themes; opening from top ones
            themed = False
            messages, listed = self._overview_messages(system, ids, language, boundary, themed=False)
        try:
            completion = await self.llm.complete(
                messages, purpose="digest",
                schema=OVERVIEW_THEMES_SCHEMA if themed else OVERVIEW_PLAIN_SCHEMA,
                schema_name="digest_overview", max_output_tokens=150 + 30 * listed, context=context,
                salvage=True,
            )
        except RingkasError as exc:  # no opening line, no model merges, no themes: the stories still go out
            log.warning("digest overview failed", extra={"error": exc.code})
            return Usage(), None, "", {}, {}, 1
        data = completion.data if isinstance(completion.data, dict) else {}
        duplicates: dict[int, int] = {}
        themes: dict[int, str] = {}
        entries = data.get("stories") if isinstance(data.get("stories"), list) else []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("id") not in ids:
                continue
            same_as = entry.get("same_as")
            if isinstance(same_as, int) and not isinstance(same_as, bool) and 0 < same_as < entry["id"]:
                duplicates[entry["id"]] = same_as
            label = _clean(entry.get("theme"), 40).strip(" .:") if themed else ""
            if label:
                themes[entry["id"]] = label[0].upper() + label[1:]
        opening = _clean(data.get("opening"), 400)
        if opening and not plausible_opening(opening):
            log.warning("digest opening dropped", extra={"chars": len(opening)})
            opening = ""
        calls = max(1, completion.usage.calls)
        return completion.usage, completion.model, opening, duplicates, themes, calls

    def _overview_messages(
        self, system: dict, ids: dict[int, Story], language: str, boundary: str, *, themed: bool
    ) -> tuple[list[dict], int]:
        cap = self.llm.input_budget(OVERVIEW_THEMES_SCHEMA if themed else OVERVIEW_PLAIN_SCHEMA)
        template = load_prompt("digest_overview_themes" if themed else "digest_overview_plain")
        lines: list[str] = []
        messages: list[dict] = []
        for index, story in ids.items():
            item = {"id": index, "headline": self.llm.tokens.truncate(story.title, 40),
                    "sources": [s.name for s in story.sources][:3]}
            trial = [*lines, json.dumps(item, ensure_ascii=False)]
            candidate = [system, {"role": "user", "content": template.render(
                language=language_name(language), boundary=boundary, items="\n".join(trial),
                max_themes=MAX_THEMES)}]
            if self.llm.tokens.count_messages(candidate) > cap:
                break
            lines, messages = trial, candidate
        if not messages:
            raise ValueError("MAX_INPUT_TOKENS is too small for the digest prompt")
        return messages, len(lines)

    def _apply_themes(self, kept: dict[int, Story], themes: dict[int, str]) -> None:
        labelled = {index: themes[index] for index in kept if index in themes}
        sizes = Counter(label.casefold() for label in labelled.values())
        # a theme groups stories: a label only one story carries is no theme, that story goes unthemed
        grouped = {index: label for index, label in labelled.items() if sizes[label.casefold()] >= 2}
        labels = {label.casefold() for label in grouped.values()}
        # themes only help when they really group: enough stories, most of them grouped, a few labels
        if len(kept) < MIN_STORIES_FOR_THEMES or len(grouped) < 0.7 * len(kept) or not 2 <= len(labels) <= (
            MAX_THEMES + 1
        ):
            if themes:
                log.info("digest themes not used", extra={"labelled": len(grouped), "labels": len(labels)})
            return
        spelling: dict[str, str] = {}
        for index, story in kept.items():
            label = grouped.get(index)
            if label is not None:
                story.theme = spelling.setdefault(label.casefold(), label)


def call_budget(stories: int) -> int:
    """Model calls a digest of `stories` stories may make: the overview, one per batch, one retry."""
    return 3 + stories // MAX_BATCH


def fall_back_to_feed(story: Story) -> None:
    """The story as its feed told it: feed title, the start of its description, marked as such."""
    story.title = story.feed_title or story.title
    story.summary = _clean(story.excerpt, FALLBACK_CHARS) or None
    story.from_feed = True


def accept_lines(answers: dict[int, tuple[str, str]], stories: dict[int, Story], language: str) -> None:
    """Set each story's written headline and summary when they are about that story (issue: weak models
    pin text to the wrong headline, or repeat one headline over several stories)."""
    sources = {index: f"{story.feed_title or story.title}. {story.excerpt} {story.hint or ''}"
               for index, story in stories.items()}
    headline_count = Counter(headline.casefold() for headline, _ in answers.values() if headline)
    summary_count = Counter(summary.casefold() for _, summary in answers.values())
    for index, (headline, summary) in answers.items():
        story = stories[index]
        others = [text for other, text in sources.items() if other != index]
        if summary_count[summary.casefold()] > 1 or not belongs(
            summary, sources[index], others, written_language=language
        ):
            log.info("digest line rejected: not about its story", extra={"id": index})
            continue
        story.summary = summary
        if headline and headline_count[headline.casefold()] == 1 and belongs(
            headline, sources[index], others, written_language=language
        ):
            story.title = headline
        else:
            story.title = story.feed_title or story.title
