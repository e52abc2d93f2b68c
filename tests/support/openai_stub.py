"""A local OpenAI-compatible Chat Completions server for tests and benchmarks.

The real `openai` SDK talks to it over HTTP on 127.0.0.1 (set `OPENAI_BASE_URL` to `stub.base_url`).

- Every request body is recorded in `stub.requests` (parsed JSON).
- `stub.responder(body) -> str | dict` decides the answer content. A `str` becomes the assistant
  message content; a `dict` is sent as the whole response JSON. The default answers JSON schemas
  with a schema-shaped object (see `fake_for_schema`) and plain requests with a short text.
- `stub.fail_next(n, status=429, retry_after=0)` makes the next n requests fail.
- `stub.reject_json_schema = True` answers 400 to requests using `response_format.type=json_schema`,
  like servers that do not support structured output.
- `stub.reject_json_object = True` does the same for `response_format.type=json_object`.
- `stub.delay` seconds before answering (benchmarks, timeouts).
- `stub.raw_next(body, status=200, content_type=..., headers=...)` answers the next request with exactly
  these bytes (HTML error pages from proxies, event streams, broken JSON); queued, one per request.
- Requests with `"stream": true` are answered as a server-sent event stream of chat.completion.chunk
  objects, `stub.stream_chunk` characters each, `stub.stream_delay` seconds apart (benchmarks); the
  last chunk carries usage when `stream_options.include_usage` asks for it.
- The default responder writes summaries the way a competent model would: from the source block's own
  sentences (`summary_from_source`), or, when another language is asked for, sentences in that language
  naming the source's people, firms and numbers; `summary_with(body, schema, **fields)` adds test text
  (hostile, huge) to such a summary so it still passes the answer checks. Weak-model behaviours and
  stand-ins of specific servers are in `model_servers.py`.
- `skipping(responder)` wraps a responder so that its JSON answers leave out items of an array (a model
  that skips stories).
- `stub.v1_only = True` serves Chat Completions only under /v1 (404 "page not found" at the root, like
  Ollama and vLLM), for OPENAI_BASE_URL set without its /v1.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.support.serving import serve

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]


def fake_for_schema(schema: dict[str, Any]) -> Any:
    """A deterministic value that satisfies a (simple) JSON schema."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: fake_for_schema(sub) for name, sub in props.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 3)), 1)
        return [fake_for_schema(schema.get("items", {"type": "string"})) for _ in range(count)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    return "stub text"


def request_text(body: dict[str, Any]) -> str:
    """All message contents of a request, joined (for assertions)."""
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


_SOURCE_BLOCK = re.compile(r"<(source-[0-9a-f]+)>(.*?)</\1>", re.S)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def source_sentences(body: dict[str, Any]) -> tuple[str, list[str]]:
    """The title and sentences of the source material a summary request carries (empty: none)."""
    match = None
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            match = _SOURCE_BLOCK.search(content) or match
    if match is None:
        return "", []
    title = ""
    sentences: list[str] = []
    for line in match.group(2).splitlines():
        line = line.strip().lstrip("-• ").strip()
        if line.startswith("Title: "):
            title = line[len("Title: ") :]
            continue
        if re.match(r"^(Site|Author|Published): ", line):
            continue
        sentences.extend(s.strip() for s in _SENTENCE.split(line) if len(s.split()) >= 4)
    return title, sentences


_WANTED_LANGUAGE = re.compile(r"write every field in ([A-Z][a-z]+)|for a busy reader, in ([A-Z][a-z]+) only")
_TEMPLATES = {
    "en": (
        "News about {a} and {b}",
        "The article reports new developments involving {a}, {b} and {c}.",
        [
            "According to the article, {a} plays a central role in the story.",
            "The report also describes what {b} is doing and why it is relevant.",
            "It further mentions {c} as part of the same development.",
        ],
        "It shows how {a} and {b} may change the market for people who follow AI.",
    ),
    "id": (
        "Kabar tentang {a} dan {b}",
        "Artikel ini melaporkan perkembangan terbaru yang melibatkan {a}, {b} dan {c}.",
        [
            "Menurut artikel tersebut, {a} memegang peran penting dalam cerita ini.",
            "Laporan itu juga menjelaskan apa yang sedang dilakukan oleh {b} saat ini.",
            "Artikel tersebut juga menyebut {c} sebagai bagian dari perkembangan yang sama.",
        ],
        "Hal ini menunjukkan bagaimana {a} dan {b} bisa mengubah pasar bagi para pengamat AI.",
    ),
}


def _source_names(sentences: list[str]) -> list[str]:
    names: list[str] = []
    for sentence in sentences:
        for word in sentence.split()[1:]:
            word = word.strip(".,;:!?()\"'“”‘’")
            specific = word[:1].isupper() or any(ch.isdigit() for ch in word)
            if len(word) > 2 and specific and word not in names:
                names.append(word)
    return [*names, "the company", "the model", "the team"][:3]


def summary_from_source(body: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | None:
    """What a competent model writes for a summary schema: the source's own sentences, or (when another
    language is asked for) sentences in that language naming the source's people, firms and numbers."""
    if "tldr" not in (schema.get("properties") or {}):
        return None
    title, sentences = source_sentences(body)
    if not sentences:
        return None
    points = sentences[1:4] or sentences[:1]
    data = {"title": title or sentences[0][:100], "tldr": sentences[0], "key_points": points}
    why = sentences[min(4, len(sentences) - 1)]
    wanted = _WANTED_LANGUAGE.search(request_text(body))
    if wanted:
        from ringkas.language import LANGUAGE_NAMES, detect_language

        code = {name: c for c, name in LANGUAGE_NAMES.items()}.get(wanted.group(1) or wanted.group(2))
        if code in _TEMPLATES and detect_language(" ".join(sentences)) not in (code, None):
            a, b, c = _source_names(sentences)
            head, tldr, lines, why_line = _TEMPLATES[code]
            data = {
                "title": head.format(a=a, b=b),
                "tldr": tldr.format(a=a, b=b, c=c),
                "key_points": [line.format(a=a, b=b, c=c) for line in lines],
            }
            why = why_line.format(a=a, b=b)
    if "why_it_matters" in schema["properties"]:
        data["why_it_matters"] = why
    return data


def summary_with(body: dict[str, Any], schema: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A plausible summary of the request's source with `fields` added to it (hostile or huge model
    text that still reads as a summary of the article, so it passes the answer checks and is shown)."""
    data = summary_from_source(body, schema) or fake_for_schema(schema)
    for name, value in fields.items():
        base = data.get(name)
        if isinstance(value, list):
            sources = source_sentences(body)[1][1:] or (base if isinstance(base, list) and base else [""])
            data[name] = [f"{sources[i % len(sources)]} {item}".strip() for i, item in enumerate(value)]
        elif isinstance(base, str) and name != "title":
            data[name] = f"{base} {value}"
        else:
            data[name] = value
    return data


def default_responder(body: dict[str, Any]) -> str | dict[str, Any]:
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
    if isinstance(schema, dict):
        return json.dumps(summary_from_source(body, schema) or fake_for_schema(schema), ensure_ascii=False)
    if fmt.get("type") == "json_object" or '"tldr"' in request_text(body):
        summary = summary_from_source(body, {"properties": {"tldr": {}, "why_it_matters": {}}})
        if summary is not None:
            return json.dumps(summary, ensure_ascii=False)
        return json.dumps({"result": "stub text"})
    _title, sentences = source_sentences(body)
    if sentences:  # notes on a part of a long text
        return "\n".join(f"- {s}" for s in sentences[:6])
    return "stub answer"


def completion_chunks(
    payload: dict[str, Any], *, include_usage: bool, pieces: int = 4
) -> list[dict[str, Any]]:
    """A chat.completion as the chat.completion.chunk objects a streaming server sends for it."""
    base = {
        "id": payload.get("id", "chatcmpl-stub"),
        "object": "chat.completion.chunk",
        "created": payload.get("created", int(time.time())),
        "model": payload.get("model", "stub-model"),
    }
    chunks: list[dict[str, Any]] = []
    for choice in payload.get("choices", []):
        message = choice.get("message") or {}
        content = message.get("content") or ""
        index = choice.get("index", 0)
        chunks.append(
            {**base, "choices": [{"index": index, "delta": {"role": "assistant"}, "finish_reason": None}]}
        )
        step = max(1, -(-len(content) // max(1, pieces)))
        for start in range(0, len(content), step):
            delta = {"content": content[start : start + step]}
            chunks.append({**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        chunks.append(
            {**base, "choices": [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}]}
        )
    if include_usage and payload.get("usage"):
        chunks.append({**base, "choices": [], "usage": payload["usage"]})
    return chunks


async def stream_completion(
    request: web.Request,
    payload: dict[str, Any],
    *,
    include_usage: bool,
    pieces: int = 4,
    chunk_delay: float = 0.0,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for chunk in completion_chunks(payload, include_usage=include_usage, pieces=pieces):
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if chunk_delay:
            await asyncio.sleep(chunk_delay)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


class OpenAIStub:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.responder: Responder = default_responder
        self.delay: float = 0.0
        self.reject_json_schema = False
        self.reject_json_object = False
        self.v1_only = False
        self.stream_chunk = 12
        self.stream_delay = 0.0
        self.stream_pieces = 4  # content chunks per streamed answer
        self._failures: list[tuple[int, float | None]] = []
        self._raw: list[tuple[int, bytes, str, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, count: int = 1, *, status: int = 429, retry_after: float | None = 0) -> None:
        self._failures.extend([(status, retry_after)] * count)

    def raw_next(
        self,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        count: int = 1,
    ) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self._raw.extend([(status, data, content_type, dict(headers or {}))] * count)

    async def start(self) -> OpenAIStub:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner, self.port = await serve(app)
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

    async def _stream(self, request: web.Request, body: dict[str, Any], answer: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        base = {"id": f"chatcmpl-stub-{len(self.requests)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model", "stub-model")}

        async def send(data: dict[str, Any]) -> None:
            await response.write(f"data: {json.dumps(data)}\n\n".encode())

        await send({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]})
        for start in range(0, len(answer), max(1, self.stream_chunk)):
            if self.stream_delay and start:
                await asyncio.sleep(self.stream_delay)
            piece = answer[start : start + max(1, self.stream_chunk)]
            await send({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                             "finish_reason": None}]})
        await send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt_tokens = max(1, len(request_text(body)) // 4)
            completion_tokens = max(1, len(answer) // 4)
            await send({**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                         "completion_tokens": completion_tokens,
                                                         "total_tokens": prompt_tokens + completion_tokens}})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.v1_only and not request.path.startswith("/v1/"):
            return web.Response(status=404, text="404 page not found")
        body = await request.json()
        self.requests.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self._raw:
                status, data, content_type, headers = self._raw.pop(0)
                headers = {"Content-Type": content_type, **headers}
                return web.Response(status=status, body=data, headers=headers)
            if self._failures:
                status, retry_after = self._failures.pop(0)
                headers = {} if retry_after is None else {"retry-after": str(retry_after)}
                return web.json_response(
                    {"error": {"message": f"stub failure {status}", "type": "stub", "code": None}},
                    status=status,
                    headers=headers,
                )
            fmt = body.get("response_format") or {}
            if self.reject_json_schema and fmt.get("type") == "json_schema":
                return web.json_response(
                    {
                        "error": {
                            "message": "response_format json_schema is not supported",
                            "type": "invalid_request_error",
                        }
                    },
                    status=400,
                )
            if self.reject_json_object and fmt.get("type") == "json_object":
                return web.json_response(
                    {
                        "error": {
                            "message": "response_format json_object is not supported",
                            "type": "invalid_request_error",
                        }
                    },
                    status=400,
                )
            answer = self.responder(body)
            if isinstance(answer, dict):
                return await self._reply(request, body, answer)
            if body.get("stream"):
                return await self._stream(request, body, answer)
            prompt_tokens = max(1, len(request_text(body)) // 4)
            return await self._reply(
                request,
                body,
                {
                    "id": f"chatcmpl-stub-{len(self.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "stub-model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": max(1, len(answer) // 4),
                        "total_tokens": prompt_tokens + max(1, len(answer) // 4),
                    },
                },
            )
        finally:
            self.in_flight -= 1

    async def _reply(
        self, request: web.Request, body: dict[str, Any], payload: dict[str, Any]
    ) -> web.StreamResponse:
        """The completion as JSON, or as a server-sent event stream when the request asked to stream."""
        if not body.get("stream") or not isinstance(payload.get("choices"), list):
            return web.json_response(payload)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await stream_completion(
            request, payload, include_usage=include_usage, pieces=self.stream_pieces
        )


def skipping(
    responder: Responder, *, key: str = "stories", keep: Callable[[int], bool] | None = None
) -> Responder:
    """A responder that answers like `responder` but leaves out items of the JSON array `key`, as weak or
    truncating models do: by default every second one (`keep(position)` decides otherwise)."""
    keep = keep or (lambda position: position % 2 == 0)

    def answer(body: dict[str, Any]) -> str | dict[str, Any]:
        reply = responder(body)
        if not isinstance(reply, str):
            return reply
        try:
            data = json.loads(reply)
        except ValueError:
            return reply
        if isinstance(data, dict) and isinstance(data.get(key), list):
            data[key] = [entry for position, entry in enumerate(data[key]) if keep(position)]
        return json.dumps(data)

    return answer


def summary_tldrs(stub: OpenAIStub) -> set[str]:
    """The TL;DRs the default responder wrote for the summary requests the stand-in received."""
    found: set[str] = set()
    for body in stub.requests:
        answer = default_responder(body)
        try:
            data = json.loads(answer) if isinstance(answer, str) else None
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("tldr"), str):
            found.add(data["tldr"])
    return found
