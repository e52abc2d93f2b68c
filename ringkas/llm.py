"""The one client for the chat model: token cap, retries, structured output with fallbacks, usage records.

Every request goes through `LLM.complete`, which

- refuses to send messages longer than MAX_INPUT_TOKENS (counted with tiktoken; callers must budget,
  `input_budget()` says how much room they have),
- retries rate limits (honouring Retry-After), 408/409/5xx, timeouts and connection errors with
  exponential backoff and jitter, then raises `ModelUnavailable`; other 4xx fail at once with a reason,
- asks for JSON via `json_schema` structured output, falling back to `json_object` and then to plain
  text for servers that lack them (remembered per instance), parses the reply robustly, validates it
  against the schema and asks once for a repair before raising `ModelOutputInvalid`,
- records every answered request's token usage in `model_calls`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import openai
from openai import AsyncOpenAI

from ringkas.documents import Usage, UsageContext
from ringkas.errors import ConfigError, ModelOutputInvalid, ModelUnavailable
from ringkas.logs import scrub
from ringkas.prompts import load_prompt
from ringkas.tokens import TokenCounter

if TYPE_CHECKING:
    from ringkas.config import Settings
    from ringkas.storage import Database

log = logging.getLogger("ringkas.llm")

JSON_SCHEMA = "json_schema"
JSON_OBJECT = "json_object"
PLAIN_TEXT = "text"
_MODES = (JSON_SCHEMA, JSON_OBJECT, PLAIN_TEXT)
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
PLACEHOLDER_API_KEY = "not-needed"  # local servers (Ollama, llama.cpp, vLLM) ignore the key
DEFAULT_TEMPERATURE = 0.2
# Messages longer than this (characters) are token-counted in a worker thread, not on the event loop.
OFF_LOOP_CHARS = 100_000
# Room the repair request adds on top of the original messages (its message plus framing).
_REPAIR_PROBLEM_CHARS = 300


class PromptTooLarge(ValueError):
    """A caller built messages over MAX_INPUT_TOKENS: a bug in that caller's budgeting, never sent."""


@dataclass(frozen=True)
class Completion:
    text: str
    data: dict | None
    usage: Usage
    model: str


class _FormatRejected(Exception):
    """The server does not support the response_format we asked for."""


class _Unreadable(Exception):
    """The server answered 200 with something that is not a Chat Completion."""

    def __init__(self, reason: str, *, web_page: bool = False) -> None:
        super().__init__(reason)
        self.web_page = web_page


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
        self.max_input_tokens = settings.max_input_tokens
        self.max_retries = settings.openai_max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.json_mode = JSON_SCHEMA  # downgraded when the server rejects structured output
        self._official = not settings.openai_base_url or "api.openai.com" in settings.openai_base_url
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

    # --- public ----------------------------------------------------------------------------------

    def input_budget(self, schema: dict | None = None) -> int:
        """Tokens the caller's messages may use: MAX_INPUT_TOKENS minus what `complete` may add
        (the JSON instructions of the fallback modes and the repair request)."""
        return self.max_input_tokens - self.format_reserve(schema)

    def format_reserve(self, schema: dict | None) -> int:
        if schema is None:
            return 0
        instructions = load_prompt("llm_json").render(schema=_schema_text(schema))
        repair = load_prompt("llm_repair").render(problem="x" * _REPAIR_PROBLEM_CHARS)
        # +2: the blank line joining the instructions to the system message, and a margin for merges.
        return (
            self.tokens.count(instructions)
            + 2
            + self.tokens.count_messages([{"role": "user", "content": repair}])
            - 3
        )

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
    ) -> Completion:
        """One answer to `messages`. With a `schema`, `data` is the validated JSON object; with
        `salvage`, a reply still invalid after the repair request is returned as the JSON object it
        holds (unvalidated: the caller must read it defensively) instead of raising."""
        self._get_client()  # a missing API key is a configuration error before anything is sent
        if self.admit is not None:
            await self.admit(context, purpose)
        usage = Usage()
        while True:
            mode = self.json_mode if schema is not None else PLAIN_TEXT
            request_messages = self._formatted(messages, schema, mode)
            await self._enforce_cap(request_messages, purpose)
            try:
                text, model, call_usage = await self._request(
                    request_messages,
                    purpose=purpose,
                    mode=mode if schema else None,
                    schema=schema,
                    schema_name=schema_name,
                    max_output_tokens=max_output_tokens,
                    context=context,
                    article_id=article_id,
                )
            except _FormatRejected:
                self._downgrade(mode)
                continue
            usage = usage + call_usage
            break
        if schema is None:
            return Completion(text=text, data=None, usage=usage, model=model)

        data, problem = parse_json_reply(text, schema)
        if data is not None:
            return Completion(text=text, data=data, usage=usage, model=model)

        log.info(
            "model reply unusable; asking once for a repair", extra={"purpose": purpose, "problem": problem}
        )
        first_reply = extract_json_object(text)
        repair = load_prompt("llm_repair").render(problem=problem[:_REPAIR_PROBLEM_CHARS])
        repair_messages = [*request_messages, {"role": "user", "content": repair}]
        if await self._count_messages(repair_messages) > self.max_input_tokens:
            # The caller budgeted without input_budget(): no room to ask again.
            if salvage and first_reply is not None:
                return self._salvaged(first_reply, text, usage, model, schema, purpose, problem)
            raise ModelOutputInvalid(detail=f"{purpose}: {problem}; no room under MAX_INPUT_TOKENS to repair")
        try:
            text, model, call_usage = await self._request(
                repair_messages,
                purpose=purpose,
                mode=mode,
                schema=schema,
                schema_name=schema_name,
                max_output_tokens=max_output_tokens,
                context=context,
                article_id=article_id,
            )
        except _FormatRejected as exc:  # pragma: no cover - the same format was just accepted
            raise ModelOutputInvalid(detail="response format rejected on repair") from exc
        usage = usage + call_usage
        data, problem = parse_json_reply(text, schema)
        if data is None:
            partial = extract_json_object(text) or first_reply
            if salvage and partial is not None:
                return self._salvaged(partial, text, usage, model, schema, purpose, problem)
            raise ModelOutputInvalid(detail=f"{purpose}: {problem}")
        return Completion(text=text, data=data, usage=usage, model=model)

    def _salvaged(
        self, data: dict, text: str, usage: Usage, model: str, schema: dict, purpose: str, problem: str
    ) -> Completion:
        log.warning(
            "model reply still invalid after the repair request; using what it holds",
            extra={"purpose": purpose, "problem": problem, "model": model},
        )
        return Completion(text=text, data=_only_known(data, schema), usage=usage, model=model)

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

    async def _enforce_cap(self, messages: list[dict], purpose: str) -> None:
        size = await self._count_messages(messages)
        if size > self.max_input_tokens:
            raise PromptTooLarge(
                f"{purpose}: {size} input tokens exceed MAX_INPUT_TOKENS={self.max_input_tokens}; "
                "the caller must budget (see LLM.input_budget)"
            )

    def _downgrade(self, mode: str) -> None:
        index = _MODES.index(mode)
        if index + 1 >= len(_MODES):  # pragma: no cover - plain text sends no response_format
            raise ModelUnavailable(detail="server rejected every response format")
        if _MODES.index(self.json_mode) <= index:
            self.json_mode = _MODES[index + 1]
            log.warning(
                "model server rejected response_format; falling back",
                extra={"from_mode": mode, "to_mode": self.json_mode, "model": self.model},
            )

    def _arguments(
        self,
        messages: list[dict],
        mode: str | None,
        schema: dict | None,
        schema_name: str,
        max_output_tokens: int | None,
    ) -> dict[str, Any]:
        args: dict[str, Any] = {"model": self.model, "messages": messages}
        if self._send_temperature:
            args["temperature"] = DEFAULT_TEMPERATURE
        if max_output_tokens:
            args[self._max_tokens_param] = max_output_tokens
        if mode == JSON_SCHEMA and schema is not None:
            args["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "strict": True, "schema": schema},
            }
        elif mode == JSON_OBJECT:
            args["response_format"] = {"type": "json_object"}
        return args

    # --- the request with retries -----------------------------------------------------------------

    async def _request(
        self,
        messages: list[dict],
        *,
        purpose: str,
        mode: str | None,
        schema: dict | None,
        schema_name: str,
        max_output_tokens: int | None,
        context: UsageContext | None,
        article_id: int | None,
    ) -> tuple[str, str, Usage]:
        attempt = 0
        adapted: set[str] = set()
        while True:
            args = self._arguments(messages, mode, schema, schema_name, max_output_tokens)
            started = time.monotonic()
            base_url = self._base_url
            try:
                async with self._limit:
                    response = _readable(await self._get_client().chat.completions.create(**args))
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
                if status == 404 and self._try_v1(base_url):
                    continue
                if (
                    status in (400, 422)
                    and mode in (JSON_SCHEMA, JSON_OBJECT)
                    and _about_format(status, message)
                ):
                    raise _FormatRejected(message) from exc
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
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                reason = "timed out" if isinstance(exc, openai.APITimeoutError) else "connection failed"
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
            return await self._read(response, messages, purpose, started, context, article_id)

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
    ) -> tuple[str, str, Usage]:
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
        else:  # some compatible servers omit usage: estimate it
            usage = Usage(await self._count_messages(messages), self.tokens.count(text), 1)
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
        return text, model, usage

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


def _about_format(status: int, message: str) -> bool:
    if status == 422:
        return True
    lowered = message.lower()
    return any(
        word in lowered for word in ("response_format", "json_schema", "json_object", "structured output")
    )


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
