"""The model client against servers that answer 200 with something other than a Chat Completion, servers
that only stream, and long articles that must be tokenized off the event loop."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import tiktoken

from ringkas.documents import Article
from ringkas.errors import ModelUnavailable
from ringkas.llm import LLM
from ringkas.summarize import SUMMARY_SCHEMA, Summarizer
from tests.support.openai_stub import OpenAIStub

HI = [{"role": "user", "content": "hi"}]
HTML_PAGE = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"


def llm_for(make_settings: Any, retries: int = 2) -> LLM:
    return LLM(make_settings(OPENAI_MAX_RETRIES=str(retries)), backoff_base=0.01, backoff_max=0.02)


def event_stream(pieces: list[str], *, model: str = "stream-model") -> str:
    chunks = [
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in pieces
    ]
    chunks[-1]["choices"][0]["finish_reason"] = "stop"
    chunks.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
                   "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
    return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"


ODD_REPLIES = {
    "proxy HTML page with 200": (HTML_PAGE, "text/html"),
    "JSON cut off mid-body": ('{"id": "x", "choices": [{"index": 0, "mess', "application/json"),
    "empty body": ("", "application/json"),
    "error object with 200": ('{"error": {"message": "model overloaded", "type": "server_error"}}',
                              "application/json"),
    "no choices": ('{"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}',
                   "application/json"),
}


@pytest.mark.parametrize("case", list(ODD_REPLIES))
async def test_an_unreadable_200_is_retried_like_a_server_error(
    case: str, openai_stub: OpenAIStub, make_settings: Any
) -> None:
    body, content_type = ODD_REPLIES[case]
    openai_stub.raw_next(body, content_type=content_type)
    llm = llm_for(make_settings)
    try:
        completion = await llm.complete(HI, purpose="test")
    finally:
        await llm.aclose()
    assert completion.text == "stub answer"
    assert len(openai_stub.requests) == 2


async def test_a_base_url_serving_web_pages_fails_plainly_after_retries(
    openai_stub: OpenAIStub, make_settings: Any
) -> None:
    openai_stub.raw_next(HTML_PAGE, content_type="text/html", count=3)
    llm = llm_for(make_settings, retries=2)
    with pytest.raises(ModelUnavailable) as failed:
        await llm.complete(HI, purpose="test")
    await llm.aclose()
    assert "OPENAI_BASE_URL" in failed.value.user_message
    assert "web page" in (failed.value.detail or "") and "3 attempts" in (failed.value.detail or "")
    assert len(openai_stub.requests) == 3


async def test_broken_json_every_time_is_model_unavailable_not_a_crash(
    openai_stub: OpenAIStub, make_settings: Any
) -> None:
    openai_stub.raw_next('{"choices": [', count=2)
    llm = llm_for(make_settings, retries=1)
    with pytest.raises(ModelUnavailable) as failed:
        await llm.complete(HI, purpose="test")
    await llm.aclose()
    assert "couldn't read" in failed.value.user_message
    assert len(openai_stub.requests) == 2


async def test_a_server_that_only_streams_is_read_as_one_completion(
    openai_stub: OpenAIStub, make_settings: Any
) -> None:
    summary = {"title": "T", "tldr": "Short.", "key_points": ["a", "b", "c"], "why_it_matters": "W"}
    text = json.dumps(summary)
    openai_stub.raw_next(event_stream([text[:10], text[10:25], text[25:]]), content_type="text/event-stream")
    llm = LLM(make_settings())
    try:
        completion = await llm.complete(HI, purpose="test", schema=SUMMARY_SCHEMA)
    finally:
        await llm.aclose()
    assert completion.data == summary
    assert completion.model == "stream-model"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    assert len(openai_stub.requests) == 1


async def test_a_long_article_is_never_tokenized_on_the_event_loop(
    openai_stub: OpenAIStub, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokenizing 2 MB takes over 100 ms: on the loop it would hold up every Slack acknowledgement."""
    loop_thread = threading.get_ident()
    on_loop: list[int] = []
    real = tiktoken.Encoding.encode_ordinary

    def recording(self: tiktoken.Encoding, text: str) -> list[int]:
        if threading.get_ident() == loop_thread:
            on_loop.append(len(text))
        return real(self, text)

    monkeypatch.setattr(tiktoken.Encoding, "encode_ordinary", recording)
    sentences = [
        "Microsoft and OpenAI extended their partnership, Satya Nadella said on Monday.",
        "All of OpenAI's cloud workloads will run on Azure from next year onwards.",
        "Developers get access to new models through the Azure OpenAI service.",
        "Analysts expect the deal to raise pressure on Google and Amazon in cloud computing.",
        "The companies did not disclose the size of the new investment in the announcement.",
    ]
    text = "\n\n".join(f"{i}. " + " ".join(sentences[i % 5 :] + sentences[: i % 5]) for i in range(2_000))
    article = Article(url="https://news.example/a", canonical_url="https://news.example/a",
                      title="Microsoft extends OpenAI deal", text=text, language="en", id=1)
    for cap in ("12000", "2000000"):  # map-reduced, and sent whole under a huge cap
        llm = LLM(make_settings(MAX_INPUT_TOKENS=cap))
        try:
            summary = await Summarizer(llm).summarize(article, "en")
        finally:
            await llm.aclose()
        assert summary.tldr
        assert max(on_loop, default=0) < 100_000, cap
    assert len(on_loop) > 3  # small counts (prompts, notes) do run on the loop: the probe sees them
