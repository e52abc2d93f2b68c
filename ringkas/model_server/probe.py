"""Reading what a local model server says about itself: kind, context window, tokenizer endpoint.

- `GET {base}/models`: vLLM `max_model_len`; llama-server `meta.n_ctx` (newer builds) and owner
  `llamacpp`; other servers' `context_length` / `context_window`.
- `GET {root}/props` (llama-server): `default_generation_settings.n_ctx` — the context it really runs with.
- `POST {root}/api/show` (Ollama): `parameters` "num_ctx N" when the model file sets one, else the
  model's trained context capped at Ollama's default window.
- Tokenizers: llama-server `POST /tokenize {"content"}`, vLLM `POST /tokenize {"model","prompt"}`,
  llama-cpp-python `POST /extras/tokenize/count {"input"}`.

Every probe is best effort with a short timeout: a server that answers none of them is used as is and
its limits are learned from its refusals.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

log = logging.getLogger("ringkas.model_server")

PROBE_TIMEOUT = 5.0
# Ollama runs a model with this window unless its Modelfile or the request says otherwise.
OLLAMA_DEFAULT_CONTEXT = 4096
_NUM_CTX = re.compile(r"^\s*num_ctx\s+(\d+)", re.M)


@dataclass
class ProbeResult:
    kind: str = "unknown"
    context_tokens: int | None = None
    context_source: str = ""
    tokenize: str = ""


def root_url(base_url: str) -> str:
    """The server root of an OpenAI-style base URL (".../v1" removed)."""
    parts = urlsplit(base_url.rstrip("/"))
    path = parts.path
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


async def probe(base_url: str, model: str, headers: dict[str, str]) -> ProbeResult:
    result = ProbeResult()
    root = root_url(base_url)
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, headers=headers, follow_redirects=False) as client:
        entry = await _model_entry(client, base_url.rstrip("/") + "/models", model)
        if entry is not None:
            _read_model_entry(entry, result)
        props = await _get_json(client, root + "/props")
        if isinstance(props, dict) and ("default_generation_settings" in props or "n_ctx" in props):
            result.kind = "llama-server"
            settings = props.get("default_generation_settings") or {}
            n_ctx = _positive(props.get("n_ctx")) or _positive(settings.get("n_ctx"))
            if n_ctx:
                result.context_tokens, result.context_source = n_ctx, "/props"
        if result.kind in ("unknown", "ollama"):
            show = await _post_json(client, root + "/api/show", {"model": model, "name": model})
            if isinstance(show, dict) and (
                "model_info" in show or "parameters" in show or "modelfile" in show
            ):
                result.kind = "ollama"
                context = _ollama_context(show)
                if context:
                    result.context_tokens, result.context_source = context, "/api/show"
        result.tokenize = await _tokenize_kind(client, root, base_url, model, result.kind)
        if result.kind == "unknown" and result.tokenize == "llama-cpp-python":
            result.kind = "llama-cpp-python"
    return result


async def count_tokens(
    base_url: str, model: str, headers: dict[str, str], kind: str, text: str
) -> int | None:
    """The server's own token count of `text`, or None when it cannot say."""
    root = root_url(base_url)
    async with httpx.AsyncClient(timeout=max(PROBE_TIMEOUT, 30.0), headers=headers) as client:
        return await _count(client, root, base_url, model, kind, text)


async def _count(
    client: httpx.AsyncClient, root: str, base_url: str, model: str, kind: str, text: str
) -> int | None:
    if kind == "llama-server":
        data = await _post_json(client, root + "/tokenize", {"content": text, "add_special": False})
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return len(tokens) if isinstance(tokens, list) else None
    if kind == "vllm":
        data = await _post_json(
            client, root + "/tokenize", {"model": model, "prompt": text, "add_special_tokens": False}
        )
        if isinstance(data, dict):
            return _positive(data.get("count")) or (
                len(data["tokens"]) if isinstance(data.get("tokens"), list) else None
            )
        return None
    if kind == "llama-cpp-python":
        data = await _post_json(client, root + "/extras/tokenize/count", {"input": text, "model": model})
        return _positive(data.get("count")) if isinstance(data, dict) else None
    return None


async def _tokenize_kind(client: httpx.AsyncClient, root: str, base_url: str, model: str, kind: str) -> str:
    order = [kind] if kind in ("llama-server", "vllm", "llama-cpp-python") else []
    if kind in ("unknown",):
        order = ["llama-server", "vllm", "llama-cpp-python"]
    for candidate in order:
        if await _count(client, root, base_url, model, candidate, "Ringkas tokenizer probe") is not None:
            return candidate
    return ""


async def _model_entry(client: httpx.AsyncClient, url: str, model: str) -> dict | None:
    data = await _get_json(client, url)
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    dicts = [e for e in entries if isinstance(e, dict)]
    for entry in dicts:
        if entry.get("id") == model or entry.get("name") == model or entry.get("model") == model:
            return entry
    return dicts[0] if len(dicts) == 1 else None


def _read_model_entry(entry: dict, result: ProbeResult) -> None:
    owner = str(entry.get("owned_by") or "").lower()
    if owner == "vllm" or "max_model_len" in entry:
        result.kind = "vllm"
    elif owner == "llamacpp":
        result.kind = "llama-server"
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    for value in (
        entry.get("max_model_len"),
        meta.get("n_ctx"),
        entry.get("context_length"),
        entry.get("context_window"),
    ):
        n_ctx = _positive(value)
        if n_ctx:
            result.context_tokens, result.context_source = n_ctx, "/v1/models"
            return


def _ollama_context(show: dict) -> int | None:
    parameters = show.get("parameters")
    if isinstance(parameters, str):
        match = _NUM_CTX.search(parameters)
        if match:
            return int(match.group(1))
    info = show.get("model_info") if isinstance(show.get("model_info"), dict) else {}
    trained = next(
        (_positive(v) for k, v in info.items() if k.endswith(".context_length") and _positive(v)), None
    )
    return min(trained, OLLAMA_DEFAULT_CONTEXT) if trained else OLLAMA_DEFAULT_CONTEXT


async def _get_json(client: httpx.AsyncClient, url: str) -> Any:
    try:
        response = await client.get(url)
        if response.status_code != 200:
            return None
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.debug("probe failed", extra={"url": url, "error": type(exc).__name__})
        return None


async def _post_json(client: httpx.AsyncClient, url: str, body: dict) -> Any:
    try:
        response = await client.post(url, json=body)
        if response.status_code != 200:
            return None
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.debug("probe failed", extra={"url": url, "error": type(exc).__name__})
        return None


def _positive(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return int(value)
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None
