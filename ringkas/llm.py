"""The one client for the chat model: budgets, retries, structured output with fallbacks, usage records.

Every request goes through `LLM.complete`, which

- learns what the server is (ringkas.model_server): its context window (probed, or from its first
  "exceeds context" refusal), how its tokenizer counts compared with tiktoken (its tokenize endpoint,
  or the `usage.prompt_tokens` it reports), which response_format it takes and which optional
  parameters it refuses; remembered per server and model (MODEL_PROFILE_PATH),
- refuses to send messages longer than `max_input_tokens` (MAX_INPUT_TOKENS, or less when the server's
  context is smaller; callers budget with `input_budget()`), and fits max_tokens into what is left,
- retries rate limits (honouring Retry-After), 408/409/5xx, timeouts and connection errors with
  exponential backoff and jitter, then raises `ModelUnavailable`; other 4xx fail at once with a reason,
- streams from local servers, so a slow server that is still writing is not cut off by OPENAI_TIMEOUT
  (an idle limit between chunks); OPENAI_TOTAL_TIMEOUT bounds the whole answer,
- asks for JSON with the strongest constraint the server takes (json_schema, llama-cpp-python's
  json_object+schema, json_object, the prompt alone), parses the reply robustly, salvages a reply cut
  off by max_tokens when its required fields are complete, validates it against the schema and asks
  once for a repair (a shorter one after a cut-off) before raising `ModelOutputInvalid`,
- records every answered request's token usage in `model_calls`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx2
import openai
from openai import AsyncOpenAI

from ringkas.documents import Usage, UsageContext
from ringkas.errors import ConfigError, ModelOutputInvalid, ModelUnavailable
from ringkas.logs import scrub
from ringkas.model_server import probe as server_probe
from ringkas.model_server.errors import (
    bounds_rejected,
    context_overflow,
    format_rejected,
    unsupported_parameter,
)
from ringkas.model_server.json_output import (
    STRING_BOUNDS,
    close_truncated,
    output_tokens_for,
    response_format,
    without_bounds,
)
from ringkas.model_server.names import short_model_name
from ringkas.model_server.profile import (
    JSON_OBJECT,
    JSON_OBJECT_SCHEMA,
    JSON_SCHEMA,
    MODES,
    PLAIN_TEXT,
    profile_store,
)
from ringkas.prompts import load_prompt
from ringkas.tokens import TokenCounter

if TYPE_CHECKING:
    from ringkas.config import Settings
    from ringkas.storage import Database

log = logging.getLogger("ringkas.llm")

__all__ = ["JSON_OBJECT", "JSON_OBJECT_SCHEMA", "JSON_SCHEMA", "LLM", "PLAIN_TEXT", "Completion"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
PLACEHOLDER_API_KEY = "not-needed"  # local servers (Ollama, llama.cpp, vLLM) ignore the key
DEFAULT_TEMPERATURE = 0.2
# Local models loop ("the same key point until max_tokens"): a mild penalty where the server takes one.
FREQUENCY_PENALTY = 0.3
REPEAT_PENALTY = 1.1  # llama.cpp's own parameter (its default is 1.0 in recent builds)
REPETITION_PENALTY = 1.05  # vLLM's
# Messages longer than this (characters) are token-counted in a worker thread, not on the event loop.
OFF_LOOP_CHARS = 100_000
# Room the repair request adds on top of the original messages (its message plus framing).
_REPAIR_PROBLEM_CHARS = 300
CONTEXT_MARGIN = 0.05  # of the server's window: chat template tokens and estimate error
RATIO_MARGIN = 1.1  # on a server/tiktoken ratio learned from usage or refusals
MEASURED_RATIO_MARGIN = 1.05  # on one measured with the server's tokenize endpoint
# Server tokens kept for answers when a small window sets the input cap (callers reserve their own
# answer room inside the cap too; this keeps callers that do not from filling the whole window).
OUTPUT_RESERVE = 1_024
MIN_INPUT_CAP = 300
MIN_OUTPUT_TOKENS = 48
_CALIBRATION_CHARS = 6_000
# llama.cpp turns a schema into a grammar, and "maxLength": 280 into 280 nested optional rules (a 9,369-
# character grammar instead of 590 for the summary schema): sampling slows to seconds per token on a
# CPU. maxItems stays (cheap, and it is what stops a looping model); string lengths are asked for in words.
GRAMMAR_SERVERS = frozenset({"llama-server", "llama-cpp-python", "ollama", "unknown"})
_SHORTER = (
    "Your previous reply was cut off because it was too long. Answer the same request again, much "
    "shorter: at most 3 key points, one short sentence each, and close the JSON object."
)


class PromptTooLarge(ValueError):
    """A caller built messages over the input cap: a bug in that caller's budgeting, never sent."""


class ContextOverflow(ModelUnavailable):
    """The server's context window cannot hold this request; the LLM has learned the window, so a
    caller that budgets again (smaller chunks) can retry."""

    code = "context_overflow"
    default_message = (
        "The text is too long for the model server's context window. Raise the server's context size "
        "(llama.cpp -c, Ollama num_ctx, vLLM --max-model-len) or set MODEL_CONTEXT_TOKENS."
    )


@dataclass(frozen=True)
class Completion:
    text: str
    data: dict | None
    usage: Usage
    model: str
    finish_reason: str | None = None
    salvaged: bool = False  # a cut-off or invalid reply used for what it holds


#: Receives the reply's text so far (the whole text, growing) while a streamed reply arrives.
TextSink = Callable[[str], Awaitable[None]]


class _StreamBroken(Exception):
    """A streamed reply broke off after part of it was shown: not retried (the part cannot be unsaid)."""


class _FormatRejected(Exception):
    """The server does not support the response_format we asked for."""


class _Unreadable(Exception):
    """The server answered 200 with something that is not a Chat Completion."""

    def __init__(self, reason: str, *, web_page: bool = False) -> None:
        super().__init__(reason)
        self.web_page = web_page


@dataclass
class _Answer:
    text: str
    model: str
    usage: Usage
    finish: str | None


class LLM:
    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 20.0,
        retry_after_max: float = 60.0,
        max_concurrency: int = 8,
    ) -> None:
        self.settings = settings
        self.db = db
        self.model = settings.openai_model
        self.tokens = TokenCounter(self.model)
        self.max_retries = settings.openai_max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        base = settings.openai_base_url or ""
        host = (urlsplit(base).hostname or "").lower()
        self._official = not base or "api.openai.com" in base
        # OpenAI and Azure serve OpenAI models: tiktoken counts what they count, and nothing to probe.
        self._cloud = self._official or host.endswith((".azure.com", ".azure-api.net"))
        # OpenAI's newer models want max_completion_tokens; most compatible servers know max_tokens.
        self._max_tokens_param = "max_completion_tokens" if self._official else "max_tokens"
        self._send_temperature = True
        self._secrets = tuple(s for s in (settings.openai_api_key,) if s)
        self._limit = asyncio.Semaphore(max_concurrency)
        self._client: AsyncOpenAI | None = None
        self._retired_clients: list[AsyncOpenAI] = []  # replaced while requests may still use them
        # OPENAI_BASE_URL as the requests use it: ".../v1" is added when the URL as configured answers
        # 404 and the same server answers under /v1 (a common slip: http://localhost:11434 for Ollama).
        self._base_url = settings.openai_base_url
        self._v1_settled = False
        # Asked before every model call with (context, purpose); raises to refuse it (ringkas/limits).
        self.admit: Callable[[UsageContext | None, str], Awaitable[None]] | None = None
        self._store = profile_store(getattr(settings, "model_profile_path", None))
        self.profile = self._store.get(f"{base or 'https://api.openai.com/v1'}|{self.model}")
        if self._cloud:
            self.profile.kind = "openai" if self._official else "azure"
        configured_context = getattr(settings, "model_context_tokens", 0)
        if configured_context:
            self.profile.context_tokens = configured_context
            self.profile.context_source = "MODEL_CONTEXT_TOKENS"
        self._prepared = self._cloud and not configured_context
        self._prepare_lock: asyncio.Lock | None = None

    # --- what the server is ----------------------------------------------------------------------

    @property
    def json_mode(self) -> str:
        return self.profile.format_mode

    @json_mode.setter
    def json_mode(self, mode: str) -> None:
        self.profile.format_mode = mode

    @property
    def max_input_tokens(self) -> int:
        """Tokens (tiktoken-counted) a request's messages may use: MAX_INPUT_TOKENS, or less when the
        server's context window (in its own tokens, which may count more) is smaller."""
        cap = self.settings.max_input_tokens
        window = self.profile.context_tokens
        if window:
            ratio = self.token_ratio
            reserve = min(OUTPUT_RESERVE, window // 8)
            usable = int((window * (1 - CONTEXT_MARGIN) - reserve) / ratio)
            cap = min(cap, max(MIN_INPUT_CAP, usable))
        return cap

    @property
    def token_ratio(self) -> float:
        """Server tokens per tiktoken token, with the safety margin (1.0 for OpenAI and Azure)."""
        if self._cloud:
            return 1.0
        margin = MEASURED_RATIO_MARGIN if self.profile.ratio_source == "tokenize" else RATIO_MARGIN
        return self.profile.ratio(exact_tokenizer=False) * margin

    @property
    def streaming(self) -> bool:
        wanted = getattr(self.settings, "openai_stream", "auto")
        if wanted == "off" or not self.profile.stream:
            return False
        return wanted == "on" or not self._cloud

    def short_model(self, model: str | None = None) -> str:
        return short_model_name(model or self.model)

    async def prepare(self) -> None:
        """Probe the server once (context window, kind, tokenizer endpoint) and log the budget chosen."""
        if self._prepared:
            return
        if self._prepare_lock is None:
            self._prepare_lock = asyncio.Lock()
        async with self._prepare_lock:
            if self._prepared:
                return
            if not self._cloud and self._base_url:
                result = await server_probe.probe(self._base_url, self.model, self._probe_headers())
                if result.kind != "unknown":
                    self.profile.kind = result.kind
                if result.tokenize:
                    self.profile.tokenize = result.tokenize
                if result.context_tokens and self.profile.context_source != "MODEL_CONTEXT_TOKENS":
                    self.profile.context_tokens = result.context_tokens
                    self.profile.context_source = result.context_source
                self.profile.probed = True
                self._store.save()
            self._prepared = True
            self._log_budget("model server budget")

    async def calibrate(self, text: str) -> None:
        """Learn how the server's tokenizer counts this kind of text (its tokenize endpoint), so long
        texts are split in the server's own tokens. No-op where the server cannot count."""
        await self.prepare()
        if self._cloud or not self.profile.tokenize or not text.strip():
            return
        sample = text[:_CALIBRATION_CHARS]
        local = await asyncio.to_thread(self.tokens.count, sample)
        if local < 50:
            return
        counted = await server_probe.count_tokens(
            self._base_url or "", self.model, self._probe_headers(), self.profile.tokenize, sample
        )
        if counted and self.profile.learn_ratio(counted / local, "tokenize"):
            self._store.save()
            self._log_budget("server tokenizer counts more than tiktoken; budget lowered")

    def _probe_headers(self) -> dict[str, str]:
        key = self.settings.openai_api_key
        return {"Authorization": f"Bearer {key}", "api-key": key} if key else {}

    def _log_budget(self, message: str) -> None:
        profile = self.profile
        log.info(
            message,
            extra={
                "model": self.model,
                "server_kind": profile.kind,
                "context_tokens": profile.context_tokens,
                "context_source": profile.context_source or "unknown",
                "token_ratio": round(self.token_ratio, 3),
                "ratio_source": profile.ratio_source or ("exact" if self._cloud else "provisional"),
                "max_input_tokens": self.max_input_tokens,
                "response_format": profile.format_mode,
                "stream": self.streaming,
            },
        )

    # --- public ----------------------------------------------------------------------------------

    def input_budget(self, schema: dict | None = None) -> int:
        """Tokens the caller's messages may use: the input cap minus what `complete` may add
        (the JSON instructions of the fallback modes and the repair request)."""
        return self.max_input_tokens - self.format_reserve(schema)

    def format_reserve(self, schema: dict | None) -> int:
        if schema is None:
            return 0
        repair = load_prompt("llm_repair").render(problem="x" * _REPAIR_PROBLEM_CHARS)
        reserve = self.tokens.count_messages([{"role": "user", "content": repair}]) - 3
        # Kept in json_schema mode too: a server that refuses it moves the schema into the prompt.
        instructions = load_prompt("llm_json").render(schema=_schema_text(schema))
        # +2: the blank line joining the instructions to the system message, and a margin for merges.
        return reserve + self.tokens.count(instructions) + 2

    def output_tokens(self, schema: dict, ceiling: int) -> int:
        """max_tokens for a reply within `schema`'s bounds, in the server's tokens (`ceiling`, counted
        in tiktoken tokens, is scaled to the server's tokenizer)."""
        ceiling = int(ceiling * min(self.token_ratio, 3.0))
        needed = output_tokens_for(schema, self.token_ratio)
        return ceiling if needed is None else min(ceiling, needed)

    async def complete(
        self,
        messages: list[dict],
        *,
        purpose: str,
        schema: dict | None = None,
        schema_name: str = "result",
        max_output_tokens: int | None = None,
        context: UsageContext | None = None,
        article_id: int | None = None,
        salvage: bool = False,
        on_text: TextSink | None = None,
    ) -> Completion:
        """One answer to `messages`. With a `schema`, `data` is the validated JSON object; with
        `salvage`, a reply still invalid after the repair request is returned as the JSON object it
        holds (unvalidated: the caller must read it defensively) instead of raising. With `on_text`,
        the reply is streamed and `on_text` sees its text as it grows (the repair request is not)."""
        self._get_client()  # a missing API key is a configuration error before anything is sent
        if self.admit is not None:
            await self.admit(context, purpose)
        await self.prepare()
        usage = Usage()
        while True:
            mode = self.json_mode if schema is not None else PLAIN_TEXT
            request_messages = self._formatted(messages, schema, mode)
            prompt_tokens = await self._enforce_cap(request_messages, purpose)
            try:
                answer = await self._request(
                    request_messages,
                    purpose=purpose,
                    mode=mode if schema else None,
                    schema=schema,
                    schema_name=schema_name,
                    max_output_tokens=max_output_tokens,
                    prompt_tokens=prompt_tokens,
                    context=context,
                    article_id=article_id,
                    on_text=on_text,
                )
            except _FormatRejected:
                self._downgrade(mode)
                continue
            usage = usage + answer.usage
            break
        text, model = answer.text, answer.model
        if schema is None:
            return Completion(text=text, data=None, usage=usage, model=model, finish_reason=answer.finish)

        data, problem = parse_json_reply(text, schema)
        if data is not None:
            return Completion(text=text, data=data, usage=usage, model=model, finish_reason=answer.finish)
        cut_off = answer.finish == "length"
        if cut_off:
            closed = close_truncated(text)
            if closed is not None and not validate(closed, schema):
                log.info(
                    "reply cut off at max_tokens; its required fields are complete",
                    extra={"purpose": purpose},
                )
                return Completion(
                    text=text, data=_only_known(closed, schema), usage=usage, model=model,
                    finish_reason=answer.finish, salvaged=True,
                )  # fmt: skip
            problem = f"cut off at max_tokens ({problem})"

        log.info(
            "model reply unusable; asking once for a repair", extra={"purpose": purpose, "problem": problem}
        )
        first_reply = extract_json_object(text) or close_truncated(text)
        repair = (
            _SHORTER if cut_off else load_prompt("llm_repair").render(problem=problem[:_REPAIR_PROBLEM_CHARS])
        )
        repair_messages = [*request_messages, {"role": "user", "content": repair}]
        repair_tokens = await self._count_messages(repair_messages)
        if repair_tokens > self.max_input_tokens:
            # The caller budgeted without input_budget(): no room to ask again.
            if salvage and first_reply is not None:
                return self._salvaged(first_reply, text, usage, model, schema, purpose, problem)
            raise ModelOutputInvalid(detail=f"{purpose}: {problem}; no room under the input cap to repair")
        try:
            answer = await self._request(
                repair_messages,
                purpose=purpose,
                mode=mode,
                schema=schema,
                schema_name=schema_name,
                max_output_tokens=max_output_tokens,
                prompt_tokens=repair_tokens,
                context=context,
                article_id=article_id,
            )
        except _FormatRejected as exc:  # pragma: no cover - the same format was just accepted
            raise ModelOutputInvalid(detail="response format rejected on repair") from exc
        usage = usage + answer.usage
        text, model = answer.text, answer.model
        data, problem = parse_json_reply(text, schema)
        if data is None and answer.finish == "length":
            closed = close_truncated(text)
            if closed is not None and not validate(closed, schema):
                data = _only_known(closed, schema)
        if data is None:
            partial = extract_json_object(text) or close_truncated(text) or first_reply
            if salvage and partial is not None:
                return self._salvaged(partial, text, usage, model, schema, purpose, problem)
            raise ModelOutputInvalid(detail=f"{purpose}: {problem}")
        return Completion(text=text, data=data, usage=usage, model=model, finish_reason=answer.finish)

    def _salvaged(
        self, data: dict, text: str, usage: Usage, model: str, schema: dict, purpose: str, problem: str
    ) -> Completion:
        log.warning(
            "model reply still invalid after the repair request; using what it holds",
            extra={"purpose": purpose, "problem": problem, "model": model},
        )
        return Completion(text=text, data=_only_known(data, schema), usage=usage, model=model, salvaged=True)

    async def aclose(self) -> None:
        for client in [*self._retired_clients, self._client]:
            if client is not None:
                await client.close()
        self._client = None
        self._retired_clients = []

    # --- request building ------------------------------------------------------------------------

    def _get_client(self) -> AsyncOpenAI:
        if self._client is None:
            api_key = self.settings.openai_api_key
            if not api_key:
                if self._official:
                    raise ConfigError(
                        "OPENAI_API_KEY is not set (set it, or point OPENAI_BASE_URL at a local model server)"
                    )
                api_key = PLACEHOLDER_API_KEY
            self._client = AsyncOpenAI(
                api_key=api_key,
                base_url=self._base_url,
                timeout=self.settings.openai_timeout,
                max_retries=0,  # retries are ours: visible in logs, testable, and Retry-After aware
            )
        return self._client

    def _formatted(self, messages: list[dict], schema: dict | None, mode: str) -> list[dict]:
        if schema is None or mode == JSON_SCHEMA:
            return list(messages)
        instructions = load_prompt("llm_json").render(schema=_schema_text(schema))
        out = [dict(m) for m in messages]
        for message in out:
            if message.get("role") == "system" and isinstance(message.get("content"), str):
                message["content"] = f"{message['content'].rstrip()}\n\n{instructions}"
                return out
        return [{"role": "system", "content": instructions}, *out]

    async def _count_messages(self, messages: list[dict]) -> int:
        """Token count of `messages`; large ones are counted off the event loop (a 2 MB article takes
        over 100 ms to tokenize, long enough to delay Slack acknowledgements)."""
        if sum(len(_content_chars(m.get("content"))) for m in messages) < OFF_LOOP_CHARS:
            return self.tokens.count_messages(messages)
        return await asyncio.to_thread(self.tokens.count_messages, messages)

    async def _enforce_cap(self, messages: list[dict], purpose: str) -> int:
        size = await self._count_messages(messages)
        cap = self.max_input_tokens
        if size > cap:
            if size <= self.settings.max_input_tokens:
                # Under MAX_INPUT_TOKENS but over what the server's window holds (learned since the
                # caller budgeted): the caller can split again.
                raise ContextOverflow(
                    detail=self._detail(purpose, f"{size} tokens over the window cap {cap}")
                )
            raise PromptTooLarge(
                f"{purpose}: {size} input tokens exceed MAX_INPUT_TOKENS={cap}; "
                "the caller must budget (see LLM.input_budget)"
            )
        return size

    def _downgrade(self, mode: str) -> None:
        index = MODES.index(mode)
        if index + 1 >= len(MODES):  # pragma: no cover - plain text sends no response_format
            raise ModelUnavailable(detail="server rejected every response format")
        if MODES.index(self.json_mode) <= index:
            self.json_mode = MODES[index + 1]
            self._store.save()
            log.warning(
                "model server rejected response_format; falling back (remembered for this server and model)",
                extra={"from_mode": mode, "to_mode": self.json_mode, "model": self.model},
            )

    def _fit_output(self, requested: int | None, prompt_tokens: int, purpose: str) -> int | None:
        """max_tokens that fits the server's window after the prompt (in the server's tokens)."""
        window = self.profile.context_tokens
        if not window or not requested:
            return requested
        prompt_server = math.ceil(prompt_tokens * self.token_ratio) + 16
        room = window - prompt_server
        if room >= requested:
            return requested
        if room < min(requested, MIN_OUTPUT_TOKENS):
            raise ContextOverflow(
                detail=self._detail(
                    purpose, f"prompt ~{prompt_server} server tokens leaves {room} of {window}"
                )
            )
        log.info(
            "max_tokens lowered to fit the server's context window",
            extra={"purpose": purpose, "requested": requested, "sent": room, "context_tokens": window},
        )
        return room

    def _arguments(
        self,
        messages: list[dict],
        mode: str | None,
        schema: dict | None,
        schema_name: str,
        max_tokens: int | None,
    ) -> dict[str, Any]:
        args: dict[str, Any] = {"model": self.model, "messages": messages}
        rejected = set(self.profile.rejected_params)
        if self._send_temperature:
            args["temperature"] = DEFAULT_TEMPERATURE
        if max_tokens:
            args[self._max_tokens_param] = max_tokens
        if mode is not None and schema is not None:
            sent_schema = schema if self.profile.schema_bounds else without_bounds(schema)
            if self._cloud or self.profile.kind in GRAMMAR_SERVERS:
                sent_schema = without_bounds(sent_schema, STRING_BOUNDS)
            fmt = response_format(mode, sent_schema, schema_name)
            if fmt is not None:
                args["response_format"] = fmt
        if not self._cloud:
            if "frequency_penalty" not in rejected:
                args["frequency_penalty"] = FREQUENCY_PENALTY
            extra: dict[str, Any] = {}
            if self.profile.kind in ("llama-server", "llama-cpp-python") and "repeat_penalty" not in rejected:
                extra["repeat_penalty"] = REPEAT_PENALTY
            if self.profile.kind == "vllm" and "repetition_penalty" not in rejected:
                extra["repetition_penalty"] = REPETITION_PENALTY
            if extra:
                args["extra_body"] = extra
        if self.streaming:
            args["stream"] = True
            if "stream_options" not in rejected:
                args["stream_options"] = {"include_usage": True}
        return args

    # --- the request with retries -----------------------------------------------------------------

    async def _send(self, args: dict[str, Any], on_text: TextSink | None = None) -> Any:
        """One HTTP exchange: the completion object (streamed replies assembled into one). With `on_text`
        the reply is streamed through the SDK and shown as it grows."""
        client = self._get_client()
        total = getattr(self.settings, "openai_total_timeout", 600.0)
        if on_text is not None:
            args = {**args, "stream": True}
            if self._official:  # compatible servers may refuse stream_options; their usage is estimated
                args["stream_options"] = {"include_usage": True}
            try:
                async with asyncio.timeout(total):
                    return await _collect_stream(await client.chat.completions.create(**args), on_text)
            except TimeoutError as exc:
                raise _Deadline(total) from exc
        if not args.get("stream"):
            return _readable(await client.chat.completions.create(**args))
        try:
            async with asyncio.timeout(total):
                async with client.chat.completions.with_streaming_response.create(**args) as response:
                    # Read whole (still chunk by chunk underneath, OPENAI_TIMEOUT between chunks): a
                    # line-by-line read cost ~4 ms of CPU per summary in async iteration alone.
                    text = await response.text()
        except TimeoutError as exc:
            raise _Deadline(total) from exc
        streamed = _from_event_stream(text)
        if streamed is not None:
            return streamed
        return _readable(_from_json_text(text))

    async def _request(
        self,
        messages: list[dict],
        *,
        purpose: str,
        mode: str | None,
        schema: dict | None,
        schema_name: str,
        max_output_tokens: int | None,
        prompt_tokens: int,
        context: UsageContext | None,
        article_id: int | None,
        on_text: TextSink | None = None,
    ) -> _Answer:
        attempt = 0
        adapted: set[str] = set()
        overflowed = False
        while True:
            max_tokens = self._fit_output(max_output_tokens, prompt_tokens, purpose)
            args = self._arguments(messages, mode, schema, schema_name, max_tokens)
            started = time.monotonic()
            base_url = self._base_url
            try:
                async with self._limit:
                    response = await self._send(args, on_text)
            except _StreamBroken as exc:
                raise ModelUnavailable(
                    "The language model's answer broke off. Please ask again.",
                    detail=self._detail(purpose, f"stream broke: {exc}"),
                ) from None
            except _Deadline as exc:
                raise ModelUnavailable(
                    f"The language model was still writing after {exc.seconds:g} seconds, so I stopped "
                    "waiting (OPENAI_TOTAL_TIMEOUT).",
                    detail=self._detail(purpose, "total deadline passed"),
                ) from exc
            except (_Unreadable, json.JSONDecodeError) as exc:
                # A body that is no Chat Completion: a proxy's HTML error page, a cut-off or empty JSON
                # body, an error object sent with 200. Usually passing, so retried like a 5xx.
                reason = str(exc) if isinstance(exc, _Unreadable) else "a broken JSON body"
                if attempt < self.max_retries:
                    delay = self._backoff(attempt)
                    self._log_retry(purpose, attempt, reason, delay)
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                hint = " (check OPENAI_BASE_URL)" if isinstance(exc, _Unreadable) and exc.web_page else ""
                raise ModelUnavailable(
                    f"The language model server sent a reply I couldn't read{hint}.",
                    detail=self._detail(purpose, f"{reason} after {attempt + 1} attempts"),
                ) from exc
            except openai.APIStatusError as exc:
                status = exc.status_code
                message = _error_message(exc)
                if mode in (JSON_SCHEMA, JSON_OBJECT_SCHEMA, JSON_OBJECT) and format_rejected(
                    status, message
                ):
                    if mode != JSON_OBJECT and bounds_rejected(message) and self.profile.schema_bounds:
                        self.profile.schema_bounds = False
                        self._store.save()
                        log.warning("model server refuses length bounds in schemas; sending without them")
                        continue
                    raise _FormatRejected(message) from exc
                overflow = context_overflow(status, message, exc.body)
                if overflow is not None:
                    self._learn_overflow(overflow, prompt_tokens, max_tokens, purpose)
                    # Retry once here when only max_tokens was too much; else the caller splits again.
                    if not overflowed and prompt_tokens <= self.max_input_tokens:
                        overflowed = True
                        continue
                    raise ContextOverflow(detail=self._detail(purpose, f"HTTP {status}: {message}")) from exc
                param = unsupported_parameter(message, set(args) | set(args.get("extra_body") or {}))
                if status in (400, 422) and param and param not in adapted:
                    adapted.add(param)
                    self._drop_parameter(param)
                    continue
                if status == 404 and self._try_v1(base_url):
                    continue
                if status == 400 and self._adapt_parameters(message, adapted):
                    continue
                if status in RETRYABLE_STATUS and not _quota_exhausted(exc):
                    delay = self._retry_delay(attempt, exc)
                    if attempt < self.max_retries and delay is not None:
                        self._log_retry(purpose, attempt, f"HTTP {status}", delay)
                        attempt += 1
                        await asyncio.sleep(delay)
                        continue
                    raise ModelUnavailable(
                        detail=self._detail(purpose, f"HTTP {status} after {attempt + 1} attempts: {message}")
                    ) from exc
                raise self._rejected(status, message, exc, purpose) from exc
            except (openai.APIConnectionError, httpx2.TransportError) as exc:  # includes timeouts
                timed_out = isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException)
                reason = "timed out" if timed_out else "connection failed"
                if attempt < self.max_retries:
                    delay = self._backoff(attempt)
                    self._log_retry(purpose, attempt, reason, delay)
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                message = (
                    "The language model took too long to answer, even after retries. Please try again later."
                    if reason == "timed out"
                    else "I couldn't reach the language model server. Please try again later."
                )
                raise ModelUnavailable(
                    message, detail=self._detail(purpose, f"{reason} after {attempt + 1} attempts")
                ) from exc
            except openai.OpenAIError as exc:
                raise ModelUnavailable(
                    "The language model server sent a reply I couldn't read.",
                    detail=self._detail(purpose, f"{type(exc).__name__}: {exc}"),
                ) from exc
            if base_url != self.settings.openai_base_url:
                self._v1_settled = True  # the server answered under /v1: keep using it
            return await self._read(response, messages, purpose, started, context, article_id, prompt_tokens)

    def _learn_overflow(self, info: Any, prompt_tokens: int, max_tokens: int | None, purpose: str) -> None:
        profile = self.profile
        before = (profile.context_tokens, profile.token_ratio)
        if info.prompt_tokens and prompt_tokens >= 50:
            profile.learn_ratio(info.prompt_tokens / prompt_tokens, "context error")
        if info.context_tokens:
            profile.context_tokens = info.context_tokens
            profile.context_source = "context error"
        else:
            # The server did not say its size: assume the prompt alone was about its whole window.
            estimate = int(prompt_tokens * self.token_ratio * 0.8)
            profile.context_tokens = min(profile.context_tokens or estimate, estimate)
            profile.context_source = "context error (estimated)"
            if (profile.context_tokens, profile.token_ratio) == before:
                profile.learn_ratio(self.profile.ratio(exact_tokenizer=False) * 1.25, "context error")
        self._store.save()
        self._log_budget("model server refused a request over its context window; budget lowered")

    def _drop_parameter(self, param: str) -> None:
        if param == "stream":
            self.profile.stream = False
        elif param not in self.profile.rejected_params:
            self.profile.rejected_params.append(param)
        self._store.save()
        log.warning("model server refuses a parameter; no longer sending it", extra={"parameter": param})

    def _try_v1(self, used_base_url: str | None) -> bool:
        """After a 404: whether to send the request again, under OPENAI_BASE_URL + "/v1"."""
        configured = self.settings.openai_base_url
        if not configured or self._v1_settled:
            return False
        if used_base_url == configured:
            if urlsplit(configured).path.rstrip("/").endswith("/v1"):
                return False
            if self._base_url == configured:
                self._switch_base_url(configured.rstrip("/") + "/v1")
                log.warning(
                    "OPENAI_BASE_URL answered 404; trying it with /v1",
                    extra={"base_url": scrub(configured, self._secrets), "model": self.model},
                )
            return True
        # 404 under /v1 as well (an unknown model, or a server that really lives at the URL as given).
        self._v1_settled = True
        if self._base_url != configured:
            self._switch_base_url(configured)
        return False

    def _switch_base_url(self, base_url: str) -> None:
        self._base_url = base_url
        if self._client is not None:
            self._retired_clients.append(self._client)
            self._client = None

    async def _read(
        self,
        response: Any,
        messages: list[dict],
        purpose: str,
        started: float,
        context: UsageContext | None,
        article_id: int | None,
        prompt_tokens: int,
    ) -> _Answer:
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            refusal = getattr(choice.message, "refusal", None)
            finish = choice.finish_reason
            model = response.model or self.model
        except (AttributeError, IndexError, TypeError) as exc:
            raise ModelUnavailable(
                "The language model server sent a reply I couldn't read.",
                detail=self._detail(purpose, f"malformed completion: {type(response).__name__}"),
            ) from exc
        reported = getattr(response, "usage", None)
        if reported is not None and getattr(reported, "prompt_tokens", None) is not None:
            usage = Usage(int(reported.prompt_tokens or 0), int(reported.completion_tokens or 0), 1)
            learnable = not self._cloud and prompt_tokens >= 200 and usage.prompt_tokens
            if learnable and self.profile.learn_ratio(usage.prompt_tokens / prompt_tokens, "usage"):
                self._store.save()
                self._log_budget("server tokenizer counts more than tiktoken; budget lowered")
        else:  # some compatible servers omit usage: estimate it
            usage = Usage(prompt_tokens, self.tokens.count(text), 1)
        log.info(
            "model call",
            extra={
                "purpose": purpose,
                "model": model,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "finish_reason": finish,
                "seconds": round(time.monotonic() - started, 3),
                "article_id": article_id,
            },
        )
        if self.db is not None:
            from ringkas.articles import record_model_call

            await record_model_call(
                self.db, purpose=purpose, model=model, usage=usage, context=context, article_id=article_id
            )
        if not text and refusal:
            raise ModelOutputInvalid(
                "The language model declined to answer this one.", detail=self._detail(purpose, "refusal")
            )
        return _Answer(text=text, model=model, usage=usage, finish=finish)

    def _adapt_parameters(self, message: str, adapted: set[str]) -> bool:
        """Some models reject parameters others need (o-series: temperature, max_tokens). Adapt once."""
        lowered = message.lower()
        if "temperature" in lowered and "temperature" not in adapted and self._send_temperature:
            adapted.add("temperature")
            self._send_temperature = False
            return True
        if "max_tokens" in lowered and "max_completion_tokens" in lowered and "max_tokens" not in adapted:
            adapted.add("max_tokens")
            self._max_tokens_param = (
                "max_completion_tokens" if self._max_tokens_param == "max_tokens" else "max_tokens"
            )
            return True
        return False

    def _rejected(self, status: int, message: str, exc: Exception, purpose: str) -> ModelUnavailable:
        detail = self._detail(purpose, f"HTTP {status}: {message}")
        lowered = message.lower()
        if status == 401:
            text = "The model server rejected the API key (check OPENAI_API_KEY)."
        elif status == 403:
            text = f"The model server refused access to model {self.model} (check the API key's permissions)."
        elif status == 404:
            text = (
                f"Model {self.model} was not found on the model server "
                "(check OPENAI_MODEL and OPENAI_BASE_URL)."
            )
        elif status == 429:
            text = "The model account has run out of quota or credit."
        elif "context" in lowered and ("length" in lowered or "window" in lowered):
            text = "The text is too long for the model's context window (lower MAX_INPUT_TOKENS)."
        else:
            text = f"The model server rejected the request (HTTP {status})."
        return ModelUnavailable(text, detail=detail)

    def _retry_delay(self, attempt: int, exc: openai.APIStatusError) -> float | None:
        """Seconds to wait: the server's Retry-After when it gives one (capped), else exponential backoff."""
        hinted = _retry_after(exc)
        if hinted is None:
            return self._backoff(attempt)
        return min(hinted, self.retry_after_max)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return ceiling * random.uniform(0.5, 1.0)

    def _log_retry(self, purpose: str, attempt: int, reason: str, delay: float) -> None:
        log.info(
            "model call failed; retrying",
            extra={
                "purpose": purpose,
                "model": self.model,
                "attempt": attempt + 1,
                "max_retries": self.max_retries,
                "reason": reason,
                "delay": round(delay, 3),
            },
        )

    def _detail(self, purpose: str, text: str) -> str:
        return scrub(f"{purpose} ({self.model}): {text}", self._secrets)[:500]


# --- helpers -------------------------------------------------------------------------------------


async def _collect_stream(stream: Any, on_text: TextSink) -> Any:
    """Read a streamed completion, handing its text so far to `on_text` as it grows; returns it shaped
    like a completion for `_read`. A server that ignored `stream` and sent one completion is read as is."""
    if not hasattr(stream, "__aiter__"):
        return _readable(stream)
    parts: list[str] = []
    model: str | None = None
    finish: str | None = None
    usage: Any = None
    shown = False
    try:
        async for chunk in stream:
            model = getattr(chunk, "model", None) or model
            usage = getattr(chunk, "usage", None) or usage
            grew = False
            for choice in getattr(chunk, "choices", None) or []:
                piece = getattr(getattr(choice, "delta", None), "content", None)
                if piece:
                    parts.append(piece)
                    grew = True
                finish = getattr(choice, "finish_reason", None) or finish
            if grew:
                try:
                    await on_text("".join(parts))
                    shown = True
                except Exception:  # showing progress must never cost the answer
                    log.warning("streamed text could not be shown", exc_info=True)
    except Exception as exc:
        if shown:
            raise _StreamBroken(type(exc).__name__) from exc
        raise
    message = SimpleNamespace(content="".join(parts), refusal=None)
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish)], model=model,
                           usage=usage)


class _Deadline(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds} s")
        self.seconds = seconds


def _from_json_text(text: str) -> Any:
    """A non-streamed JSON body read from a streaming request (servers that ignore `stream`)."""
    if not text.strip():
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict):
        return text
    if not data.get("choices"):
        error = data.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            raise _Unreadable(f"an error in a 200 reply: {str(message)[:200]}")
        raise _Unreadable("a completion without choices")
    choices = []
    for raw in data["choices"]:
        if not isinstance(raw, dict):
            continue
        message = raw.get("message") or {}
        choices.append(
            SimpleNamespace(
                message=SimpleNamespace(content=message.get("content"), refusal=message.get("refusal")),
                finish_reason=raw.get("finish_reason"),
            )
        )
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    return SimpleNamespace(
        choices=choices,
        model=data.get("model"),
        usage=SimpleNamespace(
            prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens")
        )
        if usage
        else None,
    )


def _readable(response: Any) -> Any:
    """The completion the SDK returned, or `_Unreadable`. The SDK hands back the raw text of a reply
    that is not JSON: an event stream (servers that only stream) is assembled into one completion."""
    if isinstance(response, str):
        streamed = _from_event_stream(response)
        if streamed is not None:
            return streamed
        head = response.lstrip()[:200].lower()
        if head.startswith(("<!doctype", "<html", "<head", "<body")) or "<html" in head:
            raise _Unreadable("a web page instead of a completion", web_page=True)
        raise _Unreadable("a reply that is not JSON" if response.strip() else "an empty reply")
    choices = getattr(response, "choices", None)
    if not choices:
        extra = getattr(response, "model_extra", None) or {}
        error = extra.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            raise _Unreadable(f"an error in a 200 reply: {str(message)[:200]}")
        raise _Unreadable("a completion without choices")
    return response


def _from_event_stream(text: str) -> Any | None:
    """A server-sent event stream of chat.completion.chunk objects as one completion (None: not one)."""
    if not text.lstrip().startswith(("data:", "event:", ":")):
        return None
    parts: list[str] = []
    refusal: list[str] = []
    finish: str | None = None
    model: str | None = None
    usage: Any = None
    seen = False
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == "[DONE]":
            continue
        try:
            chunk = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(chunk, dict):
            continue
        seen = True
        model = chunk.get("model") or model
        if isinstance(chunk.get("usage"), dict):
            usage = SimpleNamespace(
                prompt_tokens=chunk["usage"].get("prompt_tokens"),
                completion_tokens=chunk["usage"].get("completion_tokens"),
            )
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            if isinstance(delta.get("refusal"), str):
                refusal.append(delta["refusal"])
            finish = choice.get("finish_reason") or finish
    if not seen:
        return None
    message = SimpleNamespace(content="".join(parts), refusal="".join(refusal) or None)
    choice = SimpleNamespace(message=message, finish_reason=finish)
    return SimpleNamespace(choices=[choice], model=model, usage=usage)


def _content_chars(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _schema_text(schema: dict) -> str:
    return json.dumps(schema, ensure_ascii=False, separators=(",", ":"))


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:300]
        if isinstance(error, str):
            return error[:300]
    return str(exc.message)[:300]


def _quota_exhausted(exc: openai.APIStatusError) -> bool:
    code = exc.code or ""
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    return "insufficient_quota" in (code, str(inner.get("code") or ""), str(inner.get("type") or ""))


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers if exc.response is not None else {}
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


# --- JSON replies --------------------------------------------------------------------------------


def parse_json_reply(text: str, schema: dict) -> tuple[dict | None, str]:
    """The JSON object in a model reply, validated against `schema`, or (None, what is wrong)."""
    data = extract_json_object(text)
    if data is None:
        return None, "the reply was not a JSON object" if text.strip() else "the reply was empty"
    problem = validate(data, schema)
    if problem:
        return None, problem
    return _only_known(data, schema), ""


def extract_json_object(text: str) -> dict | None:
    """The outermost JSON object in `text`: code fences and prose around it are ignored."""
    if not text:
        return None
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    decoder = json.JSONDecoder()
    for candidate in (stripped, text):
        start = candidate.find("{")
        while start != -1:
            try:
                value, _end = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    return None


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def validate(value: Any, schema: dict, path: str = "$") -> str:
    """A small JSON Schema check (type, required, properties, items, enum); "" when valid."""
    kinds = schema.get("type")
    if kinds is not None:
        allowed = kinds if isinstance(kinds, list) else [kinds]
        if value is None:
            if "null" not in allowed:
                return f"{path} must not be null"
            return ""
        if not any(_is_type(value, k) for k in allowed if k != "null"):
            return f"{path} must be of type {'/'.join(allowed)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} must be one of {schema['enum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                return f"{path}.{name} is missing"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problem = validate(value[name], sub, f"{path}.{name}")
                if problem:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problem = validate(item, schema["items"], f"{path}[{i}]")
            if problem:
                return problem
    return ""


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def _only_known(data: dict, schema: dict) -> dict:
    """Drop properties the schema does not list when it forbids extras (models add chatter fields)."""
    properties = schema.get("properties")
    if schema.get("additionalProperties") is False and isinstance(properties, dict):
        return {k: v for k, v in data.items() if k in properties}
    return data
