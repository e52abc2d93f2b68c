"""Stand-ins for real OpenAI-compatible model servers as they ship, misbehaving the way they do.

`ModelServerStub(kind)` serves Chat Completions like one of:

- `llama-cpp-python` (`python -m llama_cpp.server`): refuses `response_format: json_schema` with HTTP 500
  and a pydantic message ("Input should be 'text' or 'json_object'"), takes `{"type": "json_object",
  "schema": …}`; "Requested tokens (N) exceed context window of M" (400); `/v1/models` says nothing of
  the context; `/extras/tokenize/count` counts.
- `llama-server` (llama.cpp's C++ server): takes json_schema; `/props` and `/v1/models` `meta.n_ctx`
  give the window; `/tokenize`; "the request exceeds the available context size" (400,
  exceed_context_size_error with n_prompt_tokens and n_ctx); prompt + max_tokens over the window cuts
  the reply short with finish_reason "length".
- `vllm`: json_schema; `/v1/models` `max_model_len`; `/tokenize`; "This model's maximum context length
  is N tokens. However, you requested X tokens (P in the messages, C in the completion)" (400).
- `ollama`: json_schema; `/api/show` (model_info context_length, parameters num_ctx); a prompt over
  the window is cut silently from the start.

Every kind counts tokens with its own tokenizer: `token_factor` × tiktoken o200k (small open models
count 1.45–2.5× more). `advertise=False` hides the metadata endpoints, so limits can only be learned
from refusals. `stream_only=True` answers every request as an event stream. Replies longer than
max_tokens are cut there (finish_reason "length"), so a looping model ends cut off as it does for real.

Behaviours for `responder` (what a weak model says) are below: `looping_summary`, `off_topic_summary`,
`wrong_language_summary`, `echoed_schema_summary`, `gibberish_answer`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import tiktoken
from aiohttp import web

from tests.support.openai_stub import OpenAIStub, request_text, stream_completion, summary_from_source
from tests.support.serving import serve

_ENCODING: tiktoken.Encoding | None = None


def o200k(text: str) -> int:
    global _ENCODING
    if _ENCODING is None:
        _ENCODING = tiktoken.get_encoding("o200k_base")
    return len(_ENCODING.encode_ordinary(text))


@dataclass
class ServerKind:
    name: str
    json_schema: bool  # takes response_format json_schema
    json_object_schema: bool  # takes {"type": "json_object", "schema": ...} as a constraint
    owned_by: str


KINDS = {
    "llama-cpp-python": ServerKind("llama-cpp-python", False, True, "me"),
    "llama-server": ServerKind("llama-server", True, False, "llamacpp"),
    "vllm": ServerKind("vllm", True, False, "vllm"),
    "ollama": ServerKind("ollama", True, False, "library"),
}


class ModelServerStub(OpenAIStub):
    def __init__(
        self,
        kind: str,
        *,
        context_tokens: int = 8192,
        token_factor: float = 1.5,
        advertise: bool = True,
        tokenize: bool = True,
        stream_only: bool = False,
        model_id: str = "stub-model",
    ) -> None:
        super().__init__()
        self.kind = KINDS[kind]
        self.context_tokens = context_tokens
        self.token_factor = token_factor
        self.advertise = advertise
        self.tokenize_endpoint = tokenize
        self.stream_only = stream_only
        self.model_id = model_id
        self.chunk_delay = 0.0
        self.overflows = 0  # requests refused (or cut) for the context window
        self.prompt_tokens_seen: list[int] = []
        self.truncated_prompts = 0

    # --- the server's own tokenizer ---------------------------------------------------------------

    def count(self, text: str) -> int:
        return math.ceil(o200k(text) * self.token_factor)

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return sum(self.count(request_text({"messages": [m]})) + 4 for m in body.get("messages", [])) + 3

    # --- routes -------------------------------------------------------------------------------------

    async def start(self) -> ModelServerStub:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._server_chat)
        app.router.add_get("/v1/models", self._server_models)
        app.router.add_get("/props", self._props)
        app.router.add_post("/api/show", self._show)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/extras/tokenize/count", self._extras_count)
        self._runner, self.port = await serve(app)
        return self

    async def _server_models(self, _request: web.Request) -> web.Response:
        entry: dict[str, Any] = {"id": self.model_id, "object": "model", "owned_by": self.kind.owned_by}
        if self.advertise and self.kind.name == "vllm":
            entry["max_model_len"] = self.context_tokens
        if self.advertise and self.kind.name == "llama-server":
            entry["meta"] = {"n_ctx": self.context_tokens, "n_ctx_train": 8192, "n_vocab": 49152}
        return web.json_response({"object": "list", "data": [entry]})

    async def _props(self, _request: web.Request) -> web.Response:
        if self.kind.name != "llama-server" or not self.advertise:
            return web.Response(status=404, text="Not Found")
        return web.json_response(
            {"default_generation_settings": {"n_ctx": self.context_tokens}, "total_slots": 1}
        )

    async def _show(self, request: web.Request) -> web.Response:
        if self.kind.name != "ollama" or not self.advertise:
            return web.Response(status=404, text="404 page not found")
        return web.json_response(
            {
                "parameters": f'num_ctx {self.context_tokens}\nstop "<|im_end|>"',
                "model_info": {"llama.context_length": 8192, "general.architecture": "llama"},
            }
        )

    async def _tokenize(self, request: web.Request) -> web.Response:
        if self.kind.name not in ("llama-server", "vllm") or not self.tokenize_endpoint:
            return web.Response(status=404, text="Not Found")
        body = await request.json()
        text = body.get("content") if self.kind.name == "llama-server" else body.get("prompt")
        tokens = list(range(self.count(str(text or ""))))
        if self.kind.name == "vllm":
            return web.json_response(
                {"count": len(tokens), "max_model_len": self.context_tokens, "tokens": tokens}
            )
        return web.json_response({"tokens": tokens})

    async def _extras_count(self, request: web.Request) -> web.Response:
        if self.kind.name != "llama-cpp-python" or not self.tokenize_endpoint:
            return web.Response(status=404, text="Not Found")
        body = await request.json()
        return web.json_response({"count": self.count(str(body.get("input") or ""))})

    # --- chat completions ----------------------------------------------------------------------------

    async def _server_chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._failures:
            status, _retry = self._failures.pop(0)
            return web.json_response({"error": {"message": f"stub failure {status}"}}, status=status)
        refused = self._format_refusal(body.get("response_format") or {})
        if refused is not None:
            return refused
        prompt = self.prompt_tokens(body)
        self.prompt_tokens_seen.append(prompt)
        limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        overflow = self._overflow(prompt, limit)
        if overflow is not None:
            self.overflows += 1
            return overflow
        room = self.context_tokens - prompt
        if self.kind.name == "ollama" and prompt > self.context_tokens:
            self.truncated_prompts += 1  # Ollama keeps the end of the prompt and says nothing
            room = 256
        max_out = min(limit or room, room)
        if limit and room < limit:
            self.overflows += 1  # llama.cpp and Ollama cut the reply short silently
        answer = self.responder(body)
        content = answer if isinstance(answer, str) else json.dumps(answer)
        content, finish = self._cut(content, max_out)
        payload = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": min(prompt, self.context_tokens),
                "completion_tokens": self.count(content),
                "total_tokens": min(prompt, self.context_tokens) + self.count(content),
            },
        }
        if body.get("stream") or self.stream_only:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await stream_completion(
                request, payload, include_usage=include_usage, pieces=8, chunk_delay=self.chunk_delay
            )
        return web.json_response(payload)

    def _format_refusal(self, fmt: dict[str, Any]) -> web.Response | None:
        kind = fmt.get("type")
        if kind == "json_schema" and not self.kind.json_schema:
            # llama-cpp-python: pydantic's literal error, sent as an internal server error.
            detail = (
                "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
                "  Input should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', "
                "input_type=str]"
            )
            return web.json_response(
                {"error": {"message": detail, "type": "internal_server_error"}}, status=500
            )
        return None

    def _overflow(self, prompt: int, limit: int) -> web.Response | None:
        window = self.context_tokens
        name = self.kind.name
        if name == "llama-server" and prompt > window:
            return web.json_response(
                {
                    "error": {
                        "code": 400,
                        "message": "the request exceeds the available context size, try increasing it",
                        "type": "exceed_context_size_error",
                        "n_prompt_tokens": prompt,
                        "n_ctx": window,
                    }
                },
                status=400,
            )
        if name == "llama-cpp-python" and prompt > window:
            message = f"Requested tokens ({prompt}) exceed context window of {window}"
            return web.json_response(
                {"error": {"message": message, "type": "invalid_request_error"}}, status=400
            )
        if name == "vllm" and prompt + limit > window:
            message = (
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{prompt + limit} tokens ({prompt} in the messages, {limit} in the completion). "
                "Please reduce the length of the messages or completion."
            )
            return web.json_response(
                {"object": "error", "message": message, "type": "BadRequestError", "code": 400}, status=400
            )
        return None

    def _cut(self, content: str, max_tokens: int) -> tuple[str, str]:
        if max_tokens <= 0 or self.count(content) <= max_tokens:
            return content, "stop"
        low, high = 0, len(content)
        while low < high:  # the longest prefix within max_tokens
            middle = (low + high + 1) // 2
            if self.count(content[:middle]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        return content[:low], "length"


# --- what weak models say ---------------------------------------------------------------------------


def _schema(body: dict[str, Any]) -> dict[str, Any]:
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {}


def _max_items(body: dict[str, Any]) -> int | None:
    points = (_schema(body).get("properties") or {}).get("key_points") or {}
    return points.get("maxItems")


def looping_summary(body: dict[str, Any]) -> str:
    """Title and TL;DR fine, then one key point over and over (a grammar with maxItems stops it)."""
    good = summary_from_source(body, {"properties": {"tldr": {}, "why_it_matters": {}}})
    if good is None:
        return "- " + "the same note again. " * 400
    point = good["key_points"][0]
    cap = _max_items(body)
    points = [point] * (cap or 400)
    data = {"title": good["title"], "tldr": good["tldr"], "key_points": points}
    if "why_it_matters" in (_schema(body).get("properties") or {"why_it_matters": {}}):
        data["why_it_matters"] = good["why_it_matters"]
    return json.dumps(data, ensure_ascii=False)


OFF_TOPIC = {
    "title": "Manchester United wins the derby",
    "tldr": "Manchester United beat Liverpool 3-1 at Old Trafford on Sunday evening.",
    "key_points": [
        "Bruno Fernandes scored twice in the second half.",
        "Liverpool's Mohamed Salah missed a penalty in the 70th minute.",
        "The win lifts United to fourth place in the Premier League table.",
    ],
    "why_it_matters": "United now lead the race for the last Champions League place.",
}


def off_topic_summary(body: dict[str, Any]) -> str:
    return json.dumps(OFF_TOPIC)


def wrong_language_summary(body: dict[str, Any]) -> str:
    """Always Indonesian, whatever language was asked for (the seed article's own)."""
    return json.dumps(
        {
            "title": "Microsoft perpanjang kemitraan dengan OpenAI",
            "tldr": "Microsoft resmi mengumumkan kelanjutan kemitraan dengan OpenAI dan investasi besar.",
            "key_points": [
                "Semua infrastruktur cloud milik OpenAI akan menggunakan Microsoft Azure.",
                "Microsoft akan memakai produk OpenAI untuk meningkatkan layanan mereka.",
                "CEO Microsoft Satya Nadella menjelaskan tujuan kemitraan tersebut.",
            ],
            "why_it_matters": "Kemitraan ini memperkuat posisi Microsoft dalam persaingan AI.",
        }
    )


def english_summary(body: dict[str, Any]) -> str:
    """Always English, whatever language was asked for."""
    return json.dumps(
        {
            "title": "Microsoft extends its partnership with OpenAI",
            "tldr": "Microsoft has officially announced that it is extending its partnership with OpenAI.",
            "key_points": [
                "All of OpenAI's cloud infrastructure will run on Microsoft Azure.",
                "Microsoft will use OpenAI's products to improve its own services.",
                "Microsoft CEO Satya Nadella explained the goals of the partnership.",
            ],
            "why_it_matters": "The deal strengthens Microsoft's position in the race for AI.",
        }
    )


def echoed_schema_summary(body: dict[str, Any]) -> str:
    """What a tiny model did with the schema: descriptions and JSON fragments as the summary."""
    return json.dumps(
        {
            "title": "title",
            "tldr": "One sentence, at most 30 words",
            "key_points": [
                "{",
                "title",
                "{'tldr':{ type':'string','description':",
                "3 to 5 one-sentence points",
            ],
            "why_it_matters": "One or two sentences",
        }
    )


def gibberish_answer(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name")
    if name == "keywords":
        return json.dumps({"keywords": []})
    if "answered" in json.dumps(_schema(body)) or name == "answer":
        return json.dumps(
            {"answer": "Quantum pineapple harmonies drift beneath velvet spreadsheets.", "answered": True}
        )
    return json.dumps(summary_from_source(body, _schema(body)) or {})
