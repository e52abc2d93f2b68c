"""Follow-up questions about shared articles, answered from the article text only.

One request to the model per question (two for long articles: a small one first turns the question
into search keywords in the article's language, so an Indonesian question finds the passage of an
English article). Everything the prompt holds is token-counted so no request exceeds MAX_INPUT_TOKENS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ringkas.documents import Article, Usage, UsageContext
from ringkas.errors import ModelOutputInvalid, NotFound, RingkasError
from ringkas.language import close_languages, detect_language, language_name
from ringkas.llm import ContextOverflow
from ringkas.prompts import load_prompt
from ringkas.quality.answer import check_answer, note_weak_model
from ringkas.questions_store import QuestionStore, StoredExchange
from ringkas.retrieval import (
    PASSAGE_TOKENS,
    Passage,
    Selection,
    passage_size,
    select_passages,
    split_passages,
)

if TYPE_CHECKING:
    from ringkas.config import Settings
    from ringkas.llm import LLM, TextSink
    from ringkas.service import Ringkas
    from ringkas.storage import Database

log = logging.getLogger("ringkas.qa")

MAX_ARTICLES = 6  # a thread with more shares is answered from the newest ones
QUESTION_MAX_TOKENS = 1_000
HISTORY_MAX_TURNS = 6
HISTORY_QUESTION_TOKENS = 200
HISTORY_ANSWER_TOKENS = 400
ANSWER_MAX_TOKENS = 900
KEYWORDS_MAX_TOKENS = 150
UNGROUNDED_ANSWER = (
    "The language model's answer didn't match the article, so I'm not posting it. "
    "Try asking in other words; a larger model would do better."
)
SAFETY_MARGIN = 48  # chat framing the token counter may not see exactly
GAP = "[…]"

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "description": "The reply to post, in the question's language."},
        "answered": {"type": "boolean", "description": "False only if the articles do not answer it."},
    },
    "required": ["answer", "answered"],
    "additionalProperties": False,
}
KEYWORDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"keywords": {"type": "array", "items": {"type": "string"}}},
    "required": ["keywords"],
    "additionalProperties": False,
}

# Our own block delimiters; an opening "<" in untrusted text is replaced so it cannot close a block.
_URL = re.compile(r"https?://\S+|<https?://[^>]*>", re.I)
_DELIMITER = re.compile(r"<(\s*/?\s*(?:article|question|conversation|turn|answer)\b)", re.I)


class EmptyQuestion(RingkasError):
    code = "empty_question"
    default_message = "Ask me something about the article, for example: what does it say about pricing?"


class PromptTooSmall(RingkasError):
    code = "prompt_too_small"
    default_message = (
        "MAX_INPUT_TOKENS is too small to fit the question with any of the article. "
        "Ask a shorter question, or raise MAX_INPUT_TOKENS."
    )


class NoArticle(RingkasError):
    code = "no_article"
    default_message = "There is no summarized article here to ask about yet. Share a link first."


@dataclass(frozen=True)
class Answer:
    text: str  # plain text with light markdown, not escaped for any chat surface
    article_ids: list[int]
    language: str | None  # ISO code the question was detected to be in, when confident
    usage: Usage
    model: str
    answered: bool  # False when the articles do not answer the question
    articles: tuple[Article, ...] = ()
    question_id: int | None = None
    passages_used: int = 0
    passages_total: int = 0


@dataclass(frozen=True)
class _Prompt:
    messages: list[dict[str, str]]
    selection: Selection
    tokens: int
    passages: list[list[Passage]]  # every article's passages, at the size this prompt was cut with


def neutralize(text: str) -> str:
    """Untrusted text inside a delimited block: make look-alike delimiters harmless."""
    return _DELIMITER.sub(r"‹\1", text)


def strip_links(text: str) -> str:
    return _URL.sub(" ", text)


def clean_question(text: str) -> str:
    return re.sub(r"[ \t]+", " ", text.replace("\r\n", "\n")).strip()


def writing_system(text: str) -> str | None:
    """The script most of the text's letters are written in ("LATIN", "CJK", "CYRILLIC", ...)."""
    counts: Counter[str] = Counter()
    for char in text:
        if char.isalpha():
            script = unicodedata.name(char, "").split(" ")[0]
            counts["CJK" if script in {"HIRAGANA", "KATAKANA"} else script] += 1
    return counts.most_common(1)[0][0] if counts else None


class QuestionService:
    def __init__(self, *, settings: Settings, db: Database, llm: LLM, ringkas: Ringkas) -> None:
        self.settings = settings
        self.llm = llm
        self.ringkas = ringkas
        self.store = QuestionStore(db)
        self._threads: dict[tuple[str, str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def _turn(self, team_id: str, channel_id: str, thread_ts: str | None) -> AsyncIterator[None]:
        """One question at a time per thread (in this process): a question asked while another is being
        answered waits, then sees that exchange as context, and the answers come in the order asked."""
        if thread_ts is None:
            yield
            return
        key = (team_id, channel_id, thread_ts)
        lock, waiting = self._threads.get(key, (asyncio.Lock(), 0))
        self._threads[key] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._threads[key]
            if waiting <= 1:
                del self._threads[key]
            else:
                self._threads[key] = (lock, waiting - 1)

    async def answer(
        self,
        question: str,
        article_ids: list[int],
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str | None,
        user_id: str | None,
        asked_via: str = "mention",
        language_hint: str | None = None,
        on_text: TextSink | None = None,
    ) -> Answer:
        """Answer `question` from the articles; `language_hint` (e.g. the channel's language) only
        settles what the detector cannot tell apart, such as Indonesian versus Malay. With `on_text`, the
        model's reply is streamed and `on_text` sees the answer's text so far as it grows."""
        async with self._turn(team_id, channel_id, thread_ts):
            return await self._answer(
                question, article_ids, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts,
                user_id=user_id, asked_via=asked_via, language_hint=language_hint, on_text=on_text,
            )

    async def _answer(
        self,
        question: str,
        article_ids: list[int],
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str | None,
        user_id: str | None,
        asked_via: str,
        language_hint: str | None,
        on_text: TextSink | None = None,
    ) -> Answer:
        question = clean_question(question)
        if not question:
            raise EmptyQuestion()
        ids = list(dict.fromkeys(article_ids))[-MAX_ARTICLES:]
        if not ids:
            raise NoArticle()
        articles = await self._load(ids)
        ids = [a.id for a in articles if a.id is not None]  # without any that are no longer stored
        await self.llm.prepare()  # the server's context window, before anything is budgeted
        context = UsageContext(team_id=team_id, channel_id=channel_id, user_id=user_id)
        tokens = self.llm.tokens
        question = tokens.truncate(question, min(QUESTION_MAX_TOKENS, self.llm.max_input_tokens // 8))
        history: list[StoredExchange] = []
        if thread_ts:
            history = await self.store.thread_history(team_id, channel_id, thread_ts, limit=HISTORY_MAX_TURNS)
        language = self._question_language(question, history, language_hint)
        conversation = self._conversation_block(history)

        cuts: dict[int, list[list[Passage]]] = {}  # articles split into passages, by passage size
        usage = Usage()
        query = question
        prompt = await asyncio.to_thread(
            self._build_prompt, articles, cuts, question, conversation, language, query
        )
        if not prompt.selection.complete:
            keywords, keyword_usage = await self._keywords(articles, question, conversation, context, ids[0])
            usage = usage + keyword_usage
            if keywords:
                # The question's own words count twice: they are what the reader actually typed.
                query = f"{question}\n{question}\n{keywords}"
            elif history:
                query = f"{question}\n{question}\n{history[0].question}"
            if query != question:
                prompt = await asyncio.to_thread(
                    self._build_prompt, articles, cuts, question, conversation, language, query
                )

        sink = _answer_sink(on_text) if on_text is not None else None
        try:
            completion = await self._request_answer(prompt.messages, context, ids[0], sink)
        except ContextOverflow:
            # The server's window turned out smaller than budgeted (now learned): fewer passages.
            prompt = await asyncio.to_thread(
                self._build_prompt, articles, cuts, question, conversation, language, query
            )
            completion = await self._request_answer(prompt.messages, context, ids[0], sink)
        usage = usage + completion.usage
        text, answered = _parse_answer(completion)
        verdict = check_answer(
            text, answered=answered, sources=[f"{a.title or ''}\n{a.text}" for a in articles]
        )
        if not verdict.ok:
            note_weak_model(completion.model, "qa", str(verdict))
            raise ModelOutputInvalid(UNGROUNDED_ANSWER, detail=f"qa: {verdict}")
        question_id = await self.store.save(
            team_id=team_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            user_id=user_id,
            question=question,
            answer=text,
            article_ids=ids,
            model=completion.model,
            usage=usage,
            language=language,
            answered=answered,
            asked_via=asked_via,
        )
        used = len(prompt.selection.passages)
        total = sum(len(p) for p in prompt.passages)
        log.info(
            "question answered",
            extra={
                "team_id": team_id,
                "channel_id": channel_id,
                "article_ids": ids,
                "answered": answered,
                "language": language,
                "passages_used": used,
                "passages_total": total,
                "prompt_tokens_estimate": prompt.tokens,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "history_turns": len(history),
            },
        )
        return Answer(
            text=text,
            article_ids=ids,
            language=language,
            usage=usage,
            model=completion.model,
            answered=answered,
            articles=tuple(articles),
            question_id=question_id,
            passages_used=used,
            passages_total=total,
        )

    async def _request_answer(
        self, messages: list[dict], context: UsageContext, article_id: int | None, on_text: Any = None
    ) -> Any:
        return await self.llm.complete(
            messages,
            purpose="qa",
            schema=ANSWER_SCHEMA,
            schema_name="answer",
            max_output_tokens=self._reserved_output(),
            context=context,
            article_id=article_id,
            on_text=on_text,
        )

    # --- loading -------------------------------------------------------------------------------

    async def _load(self, ids: Sequence[int]) -> list[Article]:
        articles: list[Article] = []
        for article_id in ids:
            try:
                articles.append(await self.ringkas.load_article(article_id))
            except NotFound:
                log.warning("article of a thread is gone", extra={"article_id": article_id})
        if not articles:
            raise NoArticle(
                "The article this conversation was about is no longer stored. Share its link again."
            )
        return articles

    # --- prompt --------------------------------------------------------------------------------

    def _reserved_output(self) -> int:
        return max(200, min(ANSWER_MAX_TOKENS, self.llm.max_input_tokens // 6))

    def _prompt_limit(self) -> int:
        """Input tokens the answer request may use: the LLM's budget for this schema (which leaves
        room for its JSON fallback instructions) minus the tokens reserved for the answer."""
        return self.llm.input_budget(ANSWER_SCHEMA) - self._reserved_output()

    def _conversation_block(self, history: Sequence[StoredExchange]) -> str:
        """Earlier exchanges of the thread, newest kept first when the budget runs out."""
        tokens = self.llm.tokens
        budget = max(150, min(2_500, self.llm.max_input_tokens // 6))
        turns: list[str] = []
        spent = 0
        for exchange in history:  # newest first
            asked = neutralize(tokens.truncate(exchange.question, HISTORY_QUESTION_TOKENS))
            replied = neutralize(tokens.truncate(exchange.answer, HISTORY_ANSWER_TOKENS))
            who = f' user="{exchange.user_id}"' if exchange.user_id else ""
            turn = f'<turn{who}>\nQ: {asked}\nA: {replied}\n</turn>'
            size = tokens.count(turn) + 1
            if spent + size > budget:
                break
            turns.append(turn)
            spent += size
        if not turns:
            return ""
        body = "\n".join(reversed(turns))
        note = "earlier questions and answers in this thread, oldest first"
        return f'<conversation note="{note}">\n{body}\n</conversation>\n\n'

    def _question_language(
        self, question: str, history: Sequence[StoredExchange], hint: str | None
    ) -> str | None:
        """The question's language when the detector is confident enough to name it."""
        text = strip_links(question)
        language = detect_language(text)
        if language is None and history:
            # Short follow-ups ("Berapa harganya?") are too thin alone; earlier questions add evidence,
            # but only in a thread that keeps to one language, and only those in the same script: an
            # English follow-up in a thread that also holds a Japanese question is not Japanese.
            script = writing_system(text)
            earlier = [h for h in history[:3] if script is None or writing_system(h.question) == script]
            known = [h.language for h in earlier if h.language]
            if earlier and all(close_languages(known[0], other) for other in known):
                language = detect_language("\n".join([text, *(strip_links(h.question) for h in earlier)]))
        if language is None:
            # Too short to tell ("siapa CEO OpenAI?"): the channel's language, else the app's.
            default = self.settings.summary_language
            return hint or (default if default != "auto" else None)
        hints = [hint, *(h.language for h in history)]
        if self.settings.summary_language != "auto":
            hints.append(self.settings.summary_language)
        for candidate in hints:
            if candidate and close_languages(language, candidate):
                return candidate
        return language

    def _detected_language(self, language: str | None) -> str:
        """The `$detected_language` part of the prompt: ` (detected: Indonesian)`, or empty when unsure."""
        name = language_name(language) if language else None
        return f" (detected: {name})" if name else ""

    def _render(
        self,
        articles: Sequence[Article],
        passages: Sequence[Sequence[Passage]],
        selection: Selection,
        question: str,
        conversation: str,
        language: str | None,
    ) -> list[dict[str, str]]:
        system = load_prompt("qa_system").render()
        blocks = _article_blocks(articles, passages, selection)
        user = load_prompt("qa_user").render(
            articles=blocks,
            conversation=conversation,
            question=neutralize(question),
            detected_language=self._detected_language(language),
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _passages(
        self, articles: Sequence[Article], size: int, cuts: dict[int, list[list[Passage]]]
    ) -> list[list[Passage]]:
        if size not in cuts:
            counter = self.llm.tokens
            cuts[size] = [
                split_passages(a.text, counter, source=i, max_tokens=size) for i, a in enumerate(articles)
            ]
        return cuts[size]

    def _build_prompt(
        self,
        articles: Sequence[Article],
        cuts: dict[int, list[list[Passage]]],
        question: str,
        conversation: str,
        language: str | None,
        query: str,
    ) -> _Prompt:
        tokens = self.llm.tokens
        limit = self._prompt_limit()
        empty = Selection(passages=[], complete=False, tokens=0)
        no_passages: list[list[Passage]] = [[] for _ in articles]

        def skeleton_size(conversation: str) -> int:
            rendered = self._render(articles, no_passages, empty, question, conversation, language)
            return tokens.count_messages(rendered)

        base = skeleton_size(conversation)
        if base + SAFETY_MARGIN > limit and conversation:
            conversation = ""  # a tiny MAX_INPUT_TOKENS: the article matters more than the history
            base = skeleton_size(conversation)
        budget = limit - base - SAFETY_MARGIN
        passages = self._passages(articles, PASSAGE_TOKENS, cuts)
        if sum(p.tokens for ps in passages for p in ps) > budget:
            # Excerpts: cut finer when the budget is small, so the lead and several of the best
            # matches fit rather than one or two long passages.
            passages = self._passages(articles, passage_size(budget), cuts)
        has_text = any(passages)
        size = base
        for _attempt in range(8):
            selection = select_passages(passages, query, max(0, budget))
            if has_text and not selection.passages:
                break  # no article text fits: asking anyway would get an answer without the article
            messages = self._render(articles, passages, selection, question, conversation, language)
            size = tokens.count_messages(messages)
            if size <= limit:
                return _Prompt(messages, selection, size, passages)
            budget -= size - limit + SAFETY_MARGIN
        raise PromptTooSmall(detail=f"qa prompt needs {size} tokens with no article text, limit {limit}")

    # --- keywords for long articles ------------------------------------------------------------

    async def _keywords(
        self,
        articles: Sequence[Article],
        question: str,
        conversation: str,
        context: UsageContext,
        article_id: int,
    ) -> tuple[str, Usage]:
        """Search terms in the articles' language(s); "" when the model cannot help."""
        languages = sorted({language_name(a.language) or a.language for a in articles if a.language})
        article_language = " and ".join(languages) if languages else "the article's language"
        system = load_prompt("qa_keywords").render(article_language=article_language)
        limit = self.llm.input_budget(KEYWORDS_SCHEMA)
        messages = []
        for history in (conversation, ""):
            user = f"{history}<question>\n{neutralize(question)}\n</question>"
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            if self.llm.tokens.count_messages(messages) <= limit:
                break
        else:
            return "", Usage()
        try:
            completion = await self.llm.complete(
                messages,
                purpose="qa_keywords",
                schema=KEYWORDS_SCHEMA,
                schema_name="keywords",
                max_output_tokens=KEYWORDS_MAX_TOKENS,
                context=context,
                article_id=article_id,
            )
        except RingkasError as exc:
            log.warning("keyword expansion failed; ranking by the question", extra={"error": exc.code})
            return "", Usage()
        data = completion.data if isinstance(completion.data, dict) else {}
        words = data.get("keywords") if isinstance(data.get("keywords"), list) else []
        keywords = " ".join(str(w) for w in words[:20] if isinstance(w, str | int | float))
        return keywords[:1_000], completion.usage


def _article_blocks(
    articles: Sequence[Article], passages: Sequence[Sequence[Passage]], selection: Selection
) -> str:
    by_source: dict[int, list[Passage]] = {}
    for passage in selection.passages:
        by_source.setdefault(passage.source, []).append(passage)
    blocks = []
    for index, article in enumerate(articles):
        chosen = by_source.get(index, [])
        header = [f'<article n="{index + 1}">', f"Title: {neutralize(_title(article))}"]
        header.append(f"URL: {neutralize(article.canonical_url or article.url)}")
        if article.published:
            header.append(f"Published: {neutralize(article.published)}")
        if selection.complete:
            header.append("Text:")
        else:
            header.append(f"Text (excerpts chosen for this question; {GAP} marks left-out parts):")
        body: list[str] = []
        previous = -1
        for passage in chosen:
            if passage.position != previous + 1:
                body.append(GAP)
            body.append(neutralize(passage.text))
            previous = passage.position
        if previous + 1 < len(passages[index]):
            body.append(GAP)
        blocks.append("\n".join(header) + "\n" + "\n\n".join(body) + "\n</article>")
    return "\n\n".join(blocks)


def _title(article: Article) -> str:
    return (article.title or article.site_name or article.canonical_url or article.url).strip()


def _parse_answer(completion: Any) -> tuple[str, bool]:
    data = completion.data if isinstance(completion.data, dict) else None
    if data is not None:
        text = data.get("answer")
        if not isinstance(text, str) or not text.strip():
            raise ModelOutputInvalid(detail="answer missing from the model's JSON")
        return text.strip(), data.get("answered") is not False
    text = (completion.text or "").strip()
    if not text:
        raise ModelOutputInvalid(detail="empty answer")
    return text, True


def _answer_sink(on_text: TextSink) -> TextSink:
    """Turns the growing JSON reply into the growing answer text (only passed on when it grew)."""
    shown = ""

    async def sink(raw: str) -> None:
        nonlocal shown
        text = answer_so_far(raw)
        if len(text) > len(shown):
            shown = text
            await on_text(text)

    return sink


_ANSWER_FIELD = re.compile(r'"answer"\s*:\s*"')
_JSON_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def answer_so_far(raw: str) -> str:
    """The `answer` string of a JSON reply still being written (`{"answer": "Bing sho`), decoded as far
    as it is complete; the whole text when the reply is not JSON (plain-text servers)."""
    stripped = raw.lstrip()
    if not stripped.startswith(("{", "```")):
        return raw
    match = _ANSWER_FIELD.search(raw)
    if match is None:
        return ""
    out: list[str] = []
    index = match.end()
    while index < len(raw):
        char = raw[index]
        if char == '"':
            break
        if char != "\\":
            out.append(char)
            index += 1
            continue
        if index + 1 >= len(raw):
            break  # an escape cut in half: wait for the rest
        code = raw[index + 1]
        if code == "u":
            digits = raw[index + 2 : index + 6]
            if len(digits) < 4:
                break
            try:
                point = int(digits, 16)
            except ValueError:
                break
            if 0xD800 <= point < 0xDC00:  # a surrogate pair (emoji): wait for and join its second half
                low = raw[index + 8 : index + 12] if raw[index + 6 : index + 8] == "\\u" else ""
                if len(low) < 4:
                    break
                try:
                    point = 0x10000 + ((point - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                except ValueError:
                    break
                index += 6
            out.append(chr(point))
            index += 6
            continue
        out.append(_JSON_ESCAPES.get(code, code))
        index += 2
    return "".join(out)
