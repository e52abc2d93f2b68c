"""Writing the digest with the model, in a handful of calls.

1. One overview call over the candidate headlines: the opening line, stories that report the same event
   (also across languages, which headline matching cannot see) and, with enough stories, theme labels.
2. Story lines in batches (run concurrently) for the stories that remain after merging and trimming;
   team-shared articles with a stored summary in the digest language reuse it and cost nothing.

Calls per digest: 1 + ceil(stories needing text / batch). Every request's messages are counted with the
model's tokenizer and kept under the LLM's input budget (MAX_INPUT_TOKENS): batches are split by token
count, and an item too long on its own has its excerpt cut.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ringkas.digest.models import Story
from ringkas.digest.select import merge_stories
from ringkas.documents import Usage, UsageContext
from ringkas.errors import ModelOutputInvalid
from ringkas.language import language_name
from ringkas.prompts import load_prompt, prompt_set_version

log = logging.getLogger("ringkas.digest.write")

MAX_BATCH = 12  # stories per call: keeps answers short enough to stay well-formed
MAX_THEMES = 4
MIN_STORIES_FOR_THEMES = 6
OUTPUT_TOKENS_PER_STORY = 170
EXCERPT_TOKENS = 220
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
        """
        if not candidates:
            return Written(opening="", stories=[], usage=Usage(), model=None, calls=0)
        boundary = f"items-{secrets.token_hex(6)}"
        system = {"role": "system", "content": load_prompt("digest_system").render(
            language=language_name(language), boundary=boundary)}
        ids = {index + 1: story for index, story in enumerate(candidates)}
        overview = await self._overview(system, ids, language, boundary, context)
        usage, model, opening, duplicates, themes = overview
        kept = self._merge(ids, duplicates)
        kept = dict(list(kept.items())[:max_stories])
        self._apply_themes(kept, themes)
        to_write = [(i, s) for i, s in kept.items() if not s.reused_summary]
        results = await asyncio.gather(
            *(self._write_batch(system, batch, kept, language, boundary, context)
              for batch in self._batches(system, to_write, language=language, boundary=boundary))
        )
        usage = sum((r[0] for r in results), usage)
        model = model or next((r[1] for r in results if r[1]), None)
        missing = [(i, s) for i, s in to_write if not s.summary]
        if missing:  # one more try for stories the model skipped, then give up on the digest
            log.warning("model skipped digest stories; asking again", extra={"missing": len(missing)})
            retry = await asyncio.gather(
                *(self._write_batch(system, batch, kept, language, boundary, context)
                  for batch in self._batches(system, missing, language=language, boundary=boundary))
            )
            usage = sum((r[0] for r in retry), usage)
            if any(not s.summary for _, s in missing):
                raise ModelOutputInvalid(detail="digest stories missing from the model's answers")
        return Written(
            opening=opening, stories=list(kept.values()), usage=usage, model=model, calls=usage.calls
        )

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
    ) -> tuple[Usage, str | None, str]:
        messages = self._stories_messages(system, items, language, boundary)
        completion = await self.llm.complete(
            messages, purpose="digest", schema=STORIES_SCHEMA, schema_name="digest_stories",
            max_output_tokens=OUTPUT_TOKENS_PER_STORY * len(items) + 100, context=context,
        )
        wanted = {item["id"]: item for item in items}
        for entry in (completion.data or {}).get("stories", []) if isinstance(completion.data, dict) else []:
            if not isinstance(entry, dict) or entry.get("id") not in wanted:
                continue
            story = ids[entry["id"]]
            summary = _clean(entry.get("summary"), 420)
            if not summary:
                continue
            story.summary = summary
            headline = _clean(entry.get("headline"), 160)
            if headline:
                story.title = headline
        return completion.usage, completion.model, ""

    async def _overview(
        self, system: dict, ids: dict[int, Story], language: str, boundary: str, context: UsageContext | None
    ) -> tuple[Usage, str | None, str, dict[int, int], dict[int, str]]:
        themed = len(ids) >= MIN_STORIES_FOR_THEMES
        messages, listed = self._overview_messages(system, ids, language, boundary, themed=themed)
        if themed and listed < len(ids):  # too many headlines for the cap: no themes; opening from top ones
            themed = False
            messages, listed = self._overview_messages(system, ids, language, boundary, themed=False)
        completion = await self.llm.complete(
            messages, purpose="digest",
            schema=OVERVIEW_THEMES_SCHEMA if themed else OVERVIEW_PLAIN_SCHEMA,
            schema_name="digest_overview", max_output_tokens=150 + 30 * listed, context=context,
        )
        data = completion.data if isinstance(completion.data, dict) else {}
        duplicates: dict[int, int] = {}
        themes: dict[int, str] = {}
        for entry in data.get("stories") or []:
            if not isinstance(entry, dict) or entry.get("id") not in ids:
                continue
            same_as = entry.get("same_as")
            if isinstance(same_as, int) and 0 < same_as < entry["id"]:
                duplicates[entry["id"]] = same_as
            label = _clean(entry.get("theme"), 40).strip(" .:") if themed else ""
            if label:
                themes[entry["id"]] = label[0].upper() + label[1:]
        return completion.usage, completion.model, _clean(data.get("opening"), 400), duplicates, themes

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
        labels = {label.casefold() for label in labelled.values()}
        # themes only help when they really group: enough stories, nearly all labelled, a few labels
        if len(kept) < MIN_STORIES_FOR_THEMES or len(labelled) < 0.8 * len(kept) or not 2 <= len(labels) <= (
            MAX_THEMES + 1
        ):
            if themes:
                log.info("digest themes not used", extra={"labelled": len(labelled), "labels": len(labels)})
            return
        spelling: dict[str, str] = {}
        for index, story in kept.items():
            label = labelled.get(index)
            if label is not None:
                story.theme = spelling.setdefault(label.casefold(), label)
