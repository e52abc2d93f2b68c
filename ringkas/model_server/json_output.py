"""Structured output across servers: the response_format per mode, output sizes, cut-off replies."""

from __future__ import annotations

import json
import math
from typing import Any

from ringkas.model_server.profile import JSON_OBJECT, JSON_OBJECT_SCHEMA, JSON_SCHEMA

_BOUND_KEYS = ("maxLength", "minLength", "maxItems", "minItems")
CHARS_PER_TOKEN = 3.5  # tiktoken o200k on news prose in Latin-script languages
JSON_OVERHEAD_TOKENS = 40


def response_format(mode: str, schema: dict, name: str) -> dict | None:
    if mode == JSON_SCHEMA:
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    if mode == JSON_OBJECT_SCHEMA:
        return {"type": "json_object", "schema": schema}
    if mode == JSON_OBJECT:
        return {"type": "json_object"}
    return None


def without_bounds(schema: Any, keys: tuple[str, ...] = _BOUND_KEYS) -> Any:
    """The schema without maxLength/maxItems-style keywords (for servers that refuse them)."""
    if isinstance(schema, dict):
        return {k: without_bounds(v, keys) for k, v in schema.items() if k not in keys}
    if isinstance(schema, list):
        return [without_bounds(v, keys) for v in schema]
    return schema


# OpenAI's strict structured outputs take minItems/maxItems but not string lengths.
STRING_BOUNDS = ("maxLength", "minLength")


def output_tokens_for(schema: dict, ratio: float = 1.0) -> int | None:
    """Tokens a complete answer within the schema's bounds needs (None: the schema is unbounded)."""
    chars = _max_chars(schema)
    if chars is None:
        return None
    return math.ceil(chars / CHARS_PER_TOKEN * ratio * 1.15) + JSON_OVERHEAD_TOKENS


def _max_chars(schema: dict) -> int | None:
    kind = schema.get("type")
    if kind == "object":
        total = 0
        for sub in (schema.get("properties") or {}).values():
            size = _max_chars(sub) if isinstance(sub, dict) else None
            if size is None:
                return None
            total += size + 8
        return total
    if kind == "array":
        items = schema.get("items")
        count = schema.get("maxItems")
        size = _max_chars(items) if isinstance(items, dict) else None
        if size is None or not isinstance(count, int):
            return None
        return count * (size + 4)
    if kind == "string":
        length = schema.get("maxLength")
        return int(length) if isinstance(length, int) else None
    return 8


def close_truncated(text: str) -> dict | None:
    """The longest prefix of a cut-off JSON object that closes into a valid object.

    Cuts back to the last complete member or array item, so a reply stopped by max_tokens in the
    middle of its fourth key point keeps the title, the TL;DR and three whole points.
    """
    start = text.find("{")
    if start < 0:
        return None
    body = text[start:]
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []  # (end of a complete value, closers needed there)
    in_string = escaped = False
    for i, ch in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                # after a key this closes into invalid JSON and the cut before it is tried instead
                cuts.append((i + 1, "".join(reversed(stack))))
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                break
            stack.pop()
            if not stack:
                return _loads(body[: i + 1])
            cuts.append((i + 1, "".join(reversed(stack))))
        elif ch == ",":
            cuts.append((i, "".join(reversed(stack))))
    for end, closers in reversed(cuts):
        value = _loads(body[:end].rstrip().rstrip(",") + closers)
        if value is not None:
            return value
    return None


def _loads(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
