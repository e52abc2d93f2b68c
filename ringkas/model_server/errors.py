"""What a model server's error reply means, read from its message (servers disagree on status codes).

Seen in the wild:
- llama-cpp-python answers `response_format: json_schema` with HTTP 500 and a pydantic message
  ("Input should be 'text' or 'json_object'"); vLLM and OpenAI say 400; FastAPI servers 422.
- Context overflow: llama-server "the request exceeds the available context size" (400, with
  `n_prompt_tokens` and `n_ctx` in the error object); OpenAI and vLLM "This model's maximum context
  length is N tokens … resulted in / requested M tokens"; llama-cpp-python "Requested tokens (M) exceed
  context window of N".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

FORMAT_REJECT_STATUS = frozenset({400, 404, 415, 422, 500, 501})
_FORMAT_WORDS = (
    "response_format",
    "response format",
    "json_schema",
    "json schema",
    "json_object",
    "structured output",
    "guided_json",
    "guided decoding",
    "input should be 'text'",
    "grammar",
)
# Schema keywords some servers refuse inside an otherwise supported json_schema.
BOUND_KEYWORDS = ("maxlength", "minlength", "maxitems", "minitems")

_CONTEXT_PATTERNS = (
    "exceeds the available context size",
    "exceed_context_size",
    "maximum context length",
    "context_length_exceeded",
    "exceed context window",
    "context window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
)
_CTX_NUMBER = (
    re.compile(r"maximum context length is (\d+)", re.I),
    re.compile(r"context window of (\d+)", re.I),
    re.compile(r"context size(?: is|:)? \(?(\d+)", re.I),
    re.compile(r"n_ctx\W+(\d+)", re.I),
)
_PROMPT_NUMBER = (
    re.compile(r"(\d+) in the messages", re.I),
    re.compile(r"messages resulted in (\d+) tokens", re.I),
    re.compile(r"your prompt (?:contains|has) (\d+)", re.I),
    re.compile(r"n_prompt_tokens\W+(\d+)", re.I),
)
_REQUESTED_NUMBER = re.compile(r"requested tokens \((\d+)\)|requested (\d+) tokens", re.I)
# Optional request parameters we drop when a server names them in a refusal.
OPTIONAL_PARAMS = (
    "stream_options",
    "repeat_penalty",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "stream",
)


@dataclass(frozen=True)
class ContextOverflowInfo:
    context_tokens: int | None  # the server's context window, when it said
    prompt_tokens: int | None  # the prompt in the server's tokens, when it said


def format_rejected(status: int, message: str) -> bool:
    """The server refused the response_format we sent (any status it uses for that)."""
    if status not in FORMAT_REJECT_STATUS:
        return False
    lowered = message.lower()
    return any(word in lowered for word in _FORMAT_WORDS)


def bounds_rejected(message: str) -> bool:
    """The refusal is about maxLength/maxItems-style keywords, not the format itself."""
    lowered = message.lower().replace("_", "")
    return any(word in lowered for word in BOUND_KEYWORDS)


def context_overflow(status: int, message: str, body: Any = None) -> ContextOverflowInfo | None:
    """Details of a "prompt too long for the context" refusal, or None when it is something else."""
    if status not in (400, 413, 422, 500):
        return None
    fields = _error_fields(body)
    lowered = message.lower()
    code = str(fields.get("code") or "") + " " + str(fields.get("type") or "")
    if not any(p in lowered for p in _CONTEXT_PATTERNS) and "context" not in code and "exceed" not in code:
        return None
    context = _int(fields.get("n_ctx")) or _first_number(_CTX_NUMBER, message)
    prompt = _int(fields.get("n_prompt_tokens")) or _first_number(_PROMPT_NUMBER, message)
    if prompt is None:
        match = _REQUESTED_NUMBER.search(message)
        # llama-cpp-python's "Requested tokens" is the prompt alone (it fails before generating).
        if match and "requested tokens" in match.group(0).lower():
            prompt = int(match.group(1))
    return ContextOverflowInfo(context_tokens=context, prompt_tokens=prompt)


_REFUSAL_WORDS = (
    "unsupported", "not supported", "unrecognized", "unknown", "not allowed", "extra", "invalid",
    "unexpected", "not permitted", "does not support",
)  # fmt: skip


def unsupported_parameter(message: str, sent: set[str]) -> str | None:
    """The optional parameter a refusal names (only one we actually sent, and only when the message
    says it is refused: "upstream stream closed" is an outage, not a refusal of `stream`)."""
    lowered = message.lower()
    if not any(word in lowered for word in _REFUSAL_WORDS):
        return None
    for name in OPTIONAL_PARAMS:
        if name in sent and name in lowered:
            if name == "stream" and "stream_options" in lowered:
                continue
            return name
    return None


def _error_fields(body: Any) -> dict:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    return None


def _first_number(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(next(g for g in match.groups() if g))
    return None
