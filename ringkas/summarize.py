"""Structured summaries of one article, within MAX_INPUT_TOKENS on every model request.

An article that fits is sent whole. A longer one is map-reduced: notes per token-counted chunk (map,
run concurrently), then the notes are combined, recursively while they are still too long, and the
final summary is written from them. The source text always travels as delimited data inside a tag
with a random name, and the system prompt says that nothing inside it is an instruction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from ringkas.documents import Article, Summary, Usage, UsageContext
from ringkas.errors import ConfigError, ModelOutputInvalid, NotAnArticle
from ringkas.language import language_name
from ringkas.llm import LLM, ContextOverflow, short_model_name
from ringkas.prompts import load_prompt, prompt_set_version
from ringkas.quality.answer import note_weak_model
from ringkas.quality.summary import SummaryText, Verdict, check_summary, instruction_texts
from ringkas.storage.base import utcnow

log = logging.getLogger("ringkas.summarize")

# Every template a summary can depend on, the JSON fallback and repair requests included: a change to any
# of them changes the cache key, so summaries are made again with the new wording.
PROMPTS = (
    "summary",
    "summary_user",
    "summary_notes",
    "summary_part",
    "summary_combine",
    "summary_reduce",
    "summary_simple",
    "llm_json",
    "llm_repair",
)
SUMMARY_OUTPUT_TOKENS = 1_200  # the JSON summary: title, one-line TL;DR, 3–5 points, why it matters
NOTES_OUTPUT_TOKENS = 800  # notes on one chunk at most
MIN_NOTES_OUTPUT_TOKENS = 100
MAP_CONCURRENCY = 4
MAX_KEY_POINTS = 5
TLDR_MAX_CHARS = 400
UNUSABLE = (
    "The language model could not produce a usable summary of this article: {problems}. "
    "A larger model may do better (see OPENAI_MODEL)."
)
_SAFETY = 16  # tokens of slack for part numbers and boundary names rendered after counting

# Bounded, so a looping model stops at the grammar instead of at max_tokens (servers that take
# maxItems/maxLength enforce them; the others get them as instructions).
SUMMARY_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "title": {
            "type": "string",
            "maxLength": 150,
            "description": "Plain, specific headline in the summary language",
        },
        "tldr": {"type": "string", "maxLength": 300, "description": "One sentence, at most 30 words"},
        "key_points": {
            "type": "array",
            "items": {"type": "string", "maxLength": 280},
            "minItems": 1,
            "maxItems": MAX_KEY_POINTS,
            "description": "3 to 5 one-sentence points, most important first",
        },
        "why_it_matters": {"type": "string", "maxLength": 350, "description": "One or two sentences"},
    },
    "required": ["title", "tldr", "key_points", "why_it_matters"],
    "additionalProperties": False,
}
# The second try after an answer failed the checks: fewer, shorter fields.
SIMPLE_SUMMARY_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 120},
        "tldr": {"type": "string", "maxLength": 240},
        "key_points": {
            "type": "array",
            "items": {"type": "string", "maxLength": 200},
            "minItems": 1,
            "maxItems": 3,
        },
    },
    "required": ["title", "tldr", "key_points"],
    "additionalProperties": False,
}
REPLANS = 3  # budgeting again after the server refused a request over its context window

_KIND = {"html": "article", "pdf": "document", "text": "text"}
_BULLET = re.compile(r"^\s*(?:[-*•·‣▪–—]|\d{1,2}[.)]|\(\d{1,2}\))\s+")
_WHITESPACE = re.compile(r"\s+")


@dataclass
class _Job:
    """Everything one summarize() call renders its prompts with."""

    article: Article
    language: str  # ISO code
    language_name: str  # "Indonesian"
    kind: str
    tag: str
    metadata: str
    context: UsageContext | None
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    final_messages: list[dict] = field(default_factory=list)  # the request the final summary came from


@lru_cache(maxsize=64)
def _instructions(language_name: str) -> tuple[str, ...]:
    """What a summary must not repeat back, once per language (the job's random source tag left out: it
    changes nothing a summary could echo, and keeps the texts, and their shingles, the same every time)."""
    return tuple(instruction_texts(
        load_prompt("summary").render(language=language_name, tag="source"),
        load_prompt("summary_simple").render(language=language_name, tag="source"),
        load_prompt("llm_json").render(schema=""),
        load_prompt("llm_repair").render(problem=""),
        schema=SUMMARY_SCHEMA,
    ))


class Summarizer:
    def __init__(self, llm: LLM, *, max_calls: int = 0) -> None:
        self.llm = llm
        self.max_calls = max_calls  # MAX_MODEL_CALLS_PER_ARTICLE (0 = no limit): long articles are cut to fit
        # The cache key: every template, and the model (another OPENAI_MODEL writes other summaries).
        self.prompt_version = f"{prompt_set_version(*PROMPTS)}+model={model_key(llm.model)}"
        self._map_limit = asyncio.Semaphore(MAP_CONCURRENCY)

    async def summarize(
        self, article: Article, language: str, *, context: UsageContext | None = None
    ) -> Summary:
        text = article.text.strip()
        if not text:
            raise NotAnArticle()
        job = _Job(
            article=article,
            language=language,
            language_name=language_name(language),
            kind=_KIND.get(article.source_kind, "article"),
            tag=f"source-{secrets.token_hex(6)}",
            metadata=_metadata(article),
            context=context,
        )
        # The server's window and how its tokenizer counts this text, before anything is budgeted.
        await self.llm.calibrate(text)
        # Tokenizing a long article takes a while (over 100 ms for 2 MB): done once, in a worker thread,
        # so Slack acknowledgements never wait for it.
        article_tokens = await asyncio.to_thread(self.llm.tokens.count, text)
        for replan in range(REPLANS + 1):
            try:
                messages = self._whole_messages(job, text)
                if article_tokens <= self._cap and await asyncio.to_thread(self._fits_final, messages):
                    job.final_messages = messages
                    data = await self._final(job, messages, purpose="summary")
                    steps = 1
                else:
                    notes = await self._map(job, text)
                    data, steps = await self._reduce(job, notes)
                break
            except ContextOverflow:
                if replan == REPLANS:
                    raise
                # The LLM learned the server's real window or token ratio: split again, smaller.
                log.warning(
                    "request over the server's context window; splitting the text further",
                    extra={"article_id": article.id, "max_input_tokens": self._cap, "replan": replan + 1},
                )
        summary = await self._checked(job, self._summary(job, data))
        log.info(
            "article summarized",
            extra={
                "article_id": article.id,
                "language": language,
                "article_tokens": article_tokens,
                "model_calls": job.usage.calls,
                "prompt_tokens": job.usage.prompt_tokens,
                "completion_tokens": job.usage.completion_tokens,
                "reduce_levels": steps - 1,
            },
        )
        return summary

    # --- budgets ---------------------------------------------------------------------------------

    @property
    def _cap(self) -> int:
        return self.llm.max_input_tokens

    def _output_reserve(self) -> int:
        """Room kept for the answer when deciding what fits (small local models share one context)."""
        return min(SUMMARY_OUTPUT_TOKENS, self._cap // 5)

    def _fits_final(self, messages: list[dict]) -> bool:
        size = self.llm.tokens.count_messages(messages)
        return size + self.llm.format_reserve(SUMMARY_SCHEMA) + self._output_reserve() <= self._cap

    def _notes_tokens(self, job: _Job) -> int:
        fixed = self.llm.tokens.count_messages(self._part_messages(job, "", 999, 999, words=999))
        return max(MIN_NOTES_OUTPUT_TOKENS, min(NOTES_OUTPUT_TOKENS, (self._cap - fixed) // 6))

    def _chunk_budget(self, job: _Job, notes_tokens: int) -> int:
        fixed = self.llm.tokens.count_messages(self._part_messages(job, "", 999, 999, words=999))
        budget = self._cap - fixed - notes_tokens - _SAFETY
        if budget < 2 * MIN_NOTES_OUTPUT_TOKENS:
            raise self._too_small("to summarize long articles")
        return budget

    def _too_small(self, what: str) -> ConfigError:
        window = self.llm.profile.context_tokens
        if self._cap < self.llm.settings.max_input_tokens and window:
            return ConfigError(
                f"The model server's context window ({window} of its tokens) is too small {what}. "
                "Start the server with a larger context (llama.cpp -c, Ollama num_ctx, vLLM --max-model-len)."
            )
        return ConfigError(f"MAX_INPUT_TOKENS={self._cap} is too small {what}; use at least 2000")

    # --- map ---------------------------------------------------------------------------------------

    async def _map(self, job: _Job, text: str) -> list[str]:
        notes_tokens = self._notes_tokens(job)
        budget = self._chunk_budget(job, notes_tokens)
        chunks = await asyncio.to_thread(self.llm.tokens.split, text, budget, overlap=min(100, budget // 20))
        log.info("long article: map-reduce", extra={"chunks": len(chunks), "chunk_tokens": budget})
        allowed = self._parts_within_call_limit(job, notes_tokens)
        if allowed is not None and len(chunks) > allowed:
            log.info("article cut to MAX_MODEL_CALLS_PER_ARTICLE",
                     extra={"chunks": len(chunks), "kept": allowed, "max_calls": self.max_calls})
            chunks = chunks[:allowed]
        total = len(chunks)

        async def one(index: int, chunk: str) -> str:
            messages = self._part_messages(job, chunk, index + 1, total, words=_words(notes_tokens))
            async with self._map_limit:
                return await self._notes(job, messages, notes_tokens, purpose="summary_map")

        return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks))))

    def _parts_within_call_limit(self, job: _Job, notes_tokens: int) -> int | None:
        """How many parts can be read when the whole summary may take `max_calls` model calls: one call
        per part, then one combining call per group of notes that fit together, then the final call."""
        if not self.max_calls:
            return None
        room = self._cap - self.llm.tokens.count_messages(self._reduce_messages(job, [""], 999))
        room -= self.llm.format_reserve(SUMMARY_SCHEMA) + self._output_reserve() + _SAFETY
        per_reduce = max(1, room // (notes_tokens + 2))
        for parts in range(max(1, self.max_calls - 1), 0, -1):
            if parts <= per_reduce and parts + 1 <= self.max_calls:
                return parts
            groups = -(-parts // per_reduce)
            if groups <= per_reduce and parts + groups + 1 <= self.max_calls:
                return parts
        return 1

    async def _notes(self, job: _Job, messages: list[dict], notes_tokens: int, *, purpose: str) -> str:
        completion = await self.llm.complete(
            messages,
            purpose=purpose,
            max_output_tokens=notes_tokens,
            context=job.context,
            article_id=job.article.id,
        )
        job.usage = job.usage + completion.usage
        job.model = completion.model
        # The server counts with its own tokenizer; cut to our count so the reduce budget holds.
        return self.llm.tokens.truncate(completion.text.strip(), notes_tokens)

    # --- reduce ------------------------------------------------------------------------------------

    async def _reduce(self, job: _Job, notes: list[str]) -> tuple[dict, int]:
        levels = 1
        total_parts = len(notes)
        while True:
            messages = self._reduce_messages(job, notes, total_parts)
            if self._fits_final(messages):
                job.final_messages = messages
                return await self._final(job, messages, purpose="summary_reduce"), levels + 1
            if len(notes) == 1:  # one note that alone does not fit: cut it (only with small caps)
                room = self._cap - self.llm.tokens.count_messages(
                    self._reduce_messages(job, [""], total_parts)
                )
                room -= self.llm.format_reserve(SUMMARY_SCHEMA) + _SAFETY
                if room - self._output_reserve() >= MIN_NOTES_OUTPUT_TOKENS:
                    notes = [self.llm.tokens.truncate(notes[0], room - self._output_reserve())]
                    continue
                # A very small MAX_INPUT_TOKENS: give up the room kept for the answer rather than fail.
                if room < MIN_NOTES_OUTPUT_TOKENS:
                    raise self._too_small("to summarize long articles")
                note = self.llm.tokens.truncate(notes[0], room)
                messages = self._reduce_messages(job, [note], total_parts)
                job.final_messages = messages
                return await self._final(job, messages, purpose="summary_reduce"), levels + 1
            notes = await self._combine(job, notes, total_parts)
            levels += 1

    async def _combine(self, job: _Job, notes: list[str], total_parts: int) -> list[str]:
        notes_tokens = self._notes_tokens(job)
        fixed = self.llm.tokens.count_messages(self._combine_messages(job, [], 999, 999, 999, words=999))
        budget = self._cap - fixed - notes_tokens - _SAFETY
        groups = _group(notes, [self.llm.tokens.count(n) + 2 for n in notes], budget)
        if len(groups) >= len(notes):
            raise self._too_small("to combine notes")
        log.info("combining notes", extra={"notes": len(notes), "groups": len(groups)})

        async def one(start: int, group: list[str]) -> str:
            first = round(start * total_parts / len(notes)) + 1
            last = round((start + len(group)) * total_parts / len(notes))
            messages = self._combine_messages(
                job, group, first, max(first, last), total_parts, words=_words(notes_tokens)
            )
            async with self._map_limit:
                return await self._notes(job, messages, notes_tokens, purpose="summary_combine")

        starts = [sum(len(g) for g in groups[:i]) for i in range(len(groups))]
        return list(await asyncio.gather(*(one(s, g) for s, g in zip(starts, groups, strict=True))))

    async def _final(self, job: _Job, messages: list[dict], *, purpose: str) -> dict:
        completion = await self.llm.complete(
            messages,
            purpose=purpose,
            schema=SUMMARY_SCHEMA,
            schema_name="summary",
            max_output_tokens=self.llm.output_tokens(SUMMARY_SCHEMA, SUMMARY_OUTPUT_TOKENS),
            context=job.context,
            article_id=job.article.id,
            # A reply that still misses a field after the repair request (some small local models
            # never write why_it_matters) is better used than thrown away: _summary reads it defensively.
            salvage=True,
        )
        job.usage = job.usage + completion.usage
        job.model = completion.model
        return completion.data or {}

    # --- checks before anyone sees it ---------------------------------------------------------------

    async def _checked(self, job: _Job, summary: Summary | None) -> Summary:
        """The summary if it passes the answer checks; else one simpler request; else a plain refusal."""
        verdict = self._verdict(job, summary)
        if summary is not None and verdict.ok:
            return summary
        log.warning(
            "summary failed the checks; asking once more, simpler",
            extra={
                "article_id": job.article.id,
                "problems": str(verdict),
                "model": job.model or self.llm.model,
            },
        )
        second = await self._simple(job, verdict)
        second_verdict = self._verdict(job, second)
        if second is not None and second_verdict.ok:
            return second
        note_weak_model(job.model or self.llm.model, "summary", str(second_verdict))
        raise ModelOutputInvalid(
            UNUSABLE.format(problems=_plain(second_verdict)),
            detail=f"first: {verdict}; second: {second_verdict}",
        )

    def _verdict(self, job: _Job, summary: Summary | None) -> Verdict:
        if summary is None:
            return Verdict(("the answer had no TL;DR or key points",))
        text = SummaryText(
            title=summary.title or "",
            tldr=summary.tldr,
            key_points=tuple(summary.key_points),
            why_it_matters=summary.why_it_matters,
        )
        return check_summary(
            text,
            article_text=f"{job.article.title or ''}\n{job.article.text}",
            article_language=job.article.language,
            language=job.language,
            instructions=_instructions(job.language_name),
        )

    async def _simple(self, job: _Job, verdict: Verdict) -> Summary | None:
        """The simpler second request: the same source, a short prompt, three fields, three points."""
        source = job.final_messages[-1]["content"] if job.final_messages else ""
        system = load_prompt("summary_simple").render(language=job.language_name, tag=job.tag)
        note = (
            f"A previous answer was rejected ({verdict}). Write in {job.language_name}, from the source only."
        )
        messages = [{"role": "system", "content": system}, {"role": "user", "content": f"{source}\n\n{note}"}]
        if (
            self.llm.tokens.count_messages(messages) + self.llm.format_reserve(SIMPLE_SUMMARY_SCHEMA)
            > self._cap
        ):
            return None
        try:
            completion = await self.llm.complete(
                messages,
                purpose="summary_retry",
                schema=SIMPLE_SUMMARY_SCHEMA,
                schema_name="summary",
                max_output_tokens=self.llm.output_tokens(SIMPLE_SUMMARY_SCHEMA, SUMMARY_OUTPUT_TOKENS),
                context=job.context,
                article_id=job.article.id,
                salvage=True,
            )
        except (ModelOutputInvalid, ContextOverflow) as exc:
            log.info(
                "simpler summary request failed", extra={"article_id": job.article.id, "error": exc.code}
            )
            return None
        job.usage = job.usage + completion.usage
        job.model = completion.model
        return self._summary(job, completion.data or {})

    # --- messages ----------------------------------------------------------------------------------

    def _system(self, job: _Job) -> dict:
        content = load_prompt("summary").render(language=job.language_name, tag=job.tag)
        return {"role": "system", "content": content}

    def _notes_system(self, job: _Job, words: int) -> dict:
        content = load_prompt("summary_notes").render(
            language=job.language_name, tag=job.tag, kind=job.kind, words=words
        )
        return {"role": "system", "content": content}

    def _whole_messages(self, job: _Job, text: str) -> list[dict]:
        user = load_prompt("summary_user").render(
            kind=job.kind,
            language=job.language_name,
            tag=job.tag,
            metadata=job.metadata,
            text=_data(text, job),
        )
        return [self._system(job), {"role": "user", "content": user}]

    def _part_messages(self, job: _Job, text: str, part: int, total: int, *, words: int) -> list[dict]:
        user = load_prompt("summary_part").render(
            part=part, total=total, kind=job.kind, tag=job.tag, metadata=job.metadata, text=_data(text, job)
        )
        return [self._notes_system(job, words), {"role": "user", "content": user}]

    def _combine_messages(
        self, job: _Job, notes: Sequence[str], first: int, last: int, total: int, *, words: int
    ) -> list[dict]:
        user = load_prompt("summary_combine").render(
            first=first, last=last, total=total, kind=job.kind, tag=job.tag, text=_data(_join(notes), job)
        )
        return [self._notes_system(job, words), {"role": "user", "content": user}]

    def _reduce_messages(self, job: _Job, notes: Sequence[str], total: int) -> list[dict]:
        user = load_prompt("summary_reduce").render(
            kind=job.kind,
            total=total,
            language=job.language_name,
            tag=job.tag,
            metadata=job.metadata,
            text=_data(_join(notes), job),
        )
        return [self._system(job), {"role": "user", "content": user}]

    # --- result --------------------------------------------------------------------------------------

    def _summary(self, job: _Job, data: dict) -> Summary | None:
        tldr = _one_line(_text(data.get("tldr")))[:TLDR_MAX_CHARS]
        points = [_one_line(_BULLET.sub("", point)) for point in _points(data.get("key_points"))]
        points = [p for p in points if p][:MAX_KEY_POINTS]
        why = _one_line(_text(data.get("why_it_matters")))
        title = _one_line(_text(data.get("title"))) or job.article.title
        if not tldr and points:
            tldr = points[0]
        if not tldr:
            return None
        return Summary(
            tldr=tldr,
            key_points=tuple(points),
            why_it_matters=why,
            language=job.language,
            model=short_model_name(job.model or self.llm.model),
            prompt_version=self.prompt_version,
            title=title,
            usage=job.usage,
            created_at=utcnow(),
        )


def model_key(model: str) -> str:
    """The model part of a summary cache key: readable, and unique for long ids (file paths)."""
    digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:8]
    return f"{short_model_name(model)[:40]}#{digest}"


def _plain(verdict: Verdict) -> str:
    return "; ".join(verdict.problems[:3]) or "no answer"


def _text(value: object) -> str:
    """A text field of a (possibly salvaged) reply: null is empty, a list is its strings joined."""
    if value is None or isinstance(value, bool | dict):
        return ""
    if isinstance(value, list):
        return " ".join(_text(item) for item in value)
    return str(value)


def _points(value: object) -> list[str]:
    """key_points of a (possibly salvaged) reply: a list, or one string with a point per line."""
    if isinstance(value, list):
        return [_text(item) for item in value]
    text = _text(value)
    lines = [line for line in text.splitlines() if line.strip()]
    return lines if len(lines) > 1 else [part for part in text.split("; ") if part.strip()]


def _metadata(article: Article) -> str:
    lines = []
    for label, value in (
        ("Title", article.title),
        ("Site", article.site_name),
        ("Author", article.author),
        ("Published", article.published),
    ):
        if value:
            lines.append(f"{label}: {_one_line(value)[:300]}")
    return "\n".join(lines) + ("\n" if lines else "")


def _data(text: str, job: _Job) -> str:
    # The tag name is random per request, so page text cannot close the block; drop it anyway.
    return text.replace(job.tag, "")


def _join(notes: Sequence[str]) -> str:
    return "\n\n".join(n.strip() for n in notes if n.strip())


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _words(tokens: int) -> int:
    """A word budget to ask for: roughly 0.6 words per token across languages, with headroom."""
    return max(40, int(tokens * 0.55))


def _group(items: list[str], sizes: list[int], budget: int) -> list[list[str]]:
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for item, size in zip(items, sizes, strict=True):
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        groups.append(current)
    return groups
