"""LLM client against the local OpenAI-compatible server: cap, retries, structured output, usage rows."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest
from sqlalchemy import select

from ringkas.documents import UsageContext
from ringkas.errors import ConfigError, ModelOutputInvalid, ModelUnavailable
from ringkas.llm import LLM, PromptTooLarge, extract_json_object
from ringkas.storage.tables import ModelCallRow
from tests.support.openai_stub import request_text

SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "points": {"type": "array", "items": {"type": "string"}},
        "score": {"type": ["integer", "null"]},
    },
    "required": ["answer", "points", "score"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Say hi."}]
SECRET = "sk-test-secret-key"


def _llm(make_settings, **env: str) -> LLM:
    return LLM(make_settings(**env), backoff_base=0.01, backoff_max=0.05)


async def test_plain_completion_and_usage_recorded(openai_stub, make_settings, database) -> None:
    llm = LLM(make_settings(), db=database)
    try:
        completion = await llm.complete(
            MESSAGES,
            purpose="test",
            max_output_tokens=50,
            context=UsageContext(team_id="T1", channel_id="C1", user_id="U1"),
            article_id=7,
        )
    finally:
        await llm.aclose()
    assert completion.text == "stub answer"
    assert completion.data is None
    assert completion.usage.calls == 1 and completion.usage.prompt_tokens > 0
    body = openai_stub.requests[0]
    assert body["model"] == "gpt-4.1-mini"
    assert body["max_tokens"] == 50  # compatible servers get max_tokens
    assert "response_format" not in body
    async with database.session() as session:
        rows = (await session.scalars(select(ModelCallRow))).all()
    assert [(r.purpose, r.team_id, r.channel_id, r.article_id) for r in rows] == [("test", "T1", "C1", 7)]
    assert rows[0].prompt_tokens == completion.usage.prompt_tokens
    assert rows[0].completion_tokens == completion.usage.completion_tokens


async def test_structured_output_uses_strict_json_schema(openai_stub, make_settings) -> None:
    llm = _llm(make_settings)
    completion = await llm.complete(MESSAGES, purpose="test", schema=SCHEMA, schema_name="reply")
    await llm.aclose()
    fmt = openai_stub.requests[0]["response_format"]
    assert fmt == {"type": "json_schema", "json_schema": {"name": "reply", "strict": True, "schema": SCHEMA}}
    assert completion.data == {"answer": "stub text", "points": ["stub text"] * 3, "score": 1}


async def test_rate_limit_honours_retry_after_then_succeeds(openai_stub, make_settings, caplog) -> None:
    # A huge backoff base: only the server's Retry-After (0 s) can let this finish in time.
    llm = LLM(make_settings(OPENAI_MAX_RETRIES="3"), backoff_base=60, backoff_max=60)
    openai_stub.fail_next(2, status=429, retry_after=0)
    caplog.set_level(logging.INFO, logger="ringkas.llm")
    async with asyncio.timeout(20):
        completion = await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert completion.text == "stub answer"
    assert len(openai_stub.requests) == 3
    retries = [r for r in caplog.records if r.getMessage() == "model call failed; retrying"]
    assert [r.reason for r in retries] == ["HTTP 429", "HTTP 429"]  # type: ignore[attr-defined]


async def test_server_errors_are_retried_with_backoff(openai_stub, make_settings) -> None:
    llm = _llm(make_settings, OPENAI_MAX_RETRIES="3")
    openai_stub.fail_next(3, status=500, retry_after=None)
    completion = await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert completion.text == "stub answer"
    assert len(openai_stub.requests) == 4


async def test_exhausted_retries_raise_model_unavailable_without_secrets(
    openai_stub, make_settings, caplog
) -> None:
    llm = _llm(make_settings, OPENAI_MAX_RETRIES="2")
    openai_stub.fail_next(10, status=503, retry_after=None)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ModelUnavailable) as info:
        await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert len(openai_stub.requests) == 3  # first try + 2 retries
    assert "unavailable" in info.value.user_message and "try again" in info.value.user_message
    assert "503" in (info.value.detail or "")
    assert SECRET not in (info.value.detail or "") + info.value.user_message
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "API key"), (403, "refused"), (404, "gpt-4.1-mini was not found"), (400, "rejected the request")],
)
async def test_client_errors_fail_at_once_with_a_reason(openai_stub, make_settings, status, words) -> None:
    llm = _llm(make_settings, OPENAI_MAX_RETRIES="3")
    openai_stub.fail_next(1, status=status, retry_after=None)
    with pytest.raises(ModelUnavailable) as info:
        await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert len(openai_stub.requests) == 1
    assert words in info.value.user_message


async def test_timeouts_are_retried_then_reported(openai_stub, make_settings) -> None:
    llm = _llm(make_settings, OPENAI_MAX_RETRIES="1", OPENAI_TIMEOUT="1")
    openai_stub.delay = 1.5
    with pytest.raises(ModelUnavailable) as info:
        await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert len(openai_stub.requests) == 2
    assert "too long" in info.value.user_message


async def test_unreachable_server_is_model_unavailable(make_settings) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = _llm(make_settings, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_MAX_RETRIES="1")
    with pytest.raises(ModelUnavailable) as info:
        await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert "couldn't reach" in info.value.user_message


async def test_messages_over_the_cap_are_never_sent(openai_stub, make_settings) -> None:
    llm = _llm(make_settings, MAX_INPUT_TOKENS="1000")
    huge = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(PromptTooLarge):
        await llm.complete(huge, purpose="test")
    await llm.aclose()
    assert openai_stub.requests == []


async def test_json_schema_rejected_falls_back_to_json_object_and_remembers(
    openai_stub, make_settings
) -> None:
    llm = _llm(make_settings)
    openai_stub.reject_json_schema = True
    openai_stub.responder = lambda body: json.dumps({"answer": "hi", "points": ["a"], "score": None})
    first = await llm.complete(MESSAGES, purpose="test", schema=SCHEMA)
    second = await llm.complete(MESSAGES, purpose="test", schema=SCHEMA)
    await llm.aclose()
    assert first.data == second.data == {"answer": "hi", "points": ["a"], "score": None}
    kinds = [(r.get("response_format") or {}).get("type") for r in openai_stub.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    # The schema moved into the system prompt, which JSON mode needs anyway.
    assert '"points"' in openai_stub.requests[1]["messages"][0]["content"]
    assert "JSON" in openai_stub.requests[1]["messages"][0]["content"]


async def test_json_object_rejected_falls_back_to_plain_text(openai_stub, make_settings) -> None:
    llm = _llm(make_settings)
    openai_stub.reject_json_schema = True
    openai_stub.reject_json_object = True
    openai_stub.responder = lambda body: 'Sure! ```json\n{"answer": "hi", "points": [], "score": 2}\n```'
    completion = await llm.complete(MESSAGES, purpose="test", schema=SCHEMA)
    await llm.aclose()
    assert completion.data == {"answer": "hi", "points": [], "score": 2}
    kinds = [(r.get("response_format") or {}).get("type") for r in openai_stub.requests]
    # json_schema, then llama-cpp-python's json_object+schema, then plain json_object, then the prompt alone
    assert kinds == ["json_schema", "json_object", "json_object", None]
    assert "schema" in openai_stub.requests[1]["response_format"]
    assert "Reply with one JSON object" in request_text(openai_stub.requests[-1])


async def test_invalid_json_gets_one_repair_request(openai_stub, make_settings, database) -> None:
    llm = LLM(make_settings(), db=database, backoff_base=0.01)
    replies = iter(["I think the answer is hi", json.dumps({"answer": "hi", "points": ["x"], "score": 3})])
    openai_stub.responder = lambda body: next(replies)
    completion = await llm.complete(MESSAGES, purpose="test", schema=SCHEMA)
    await llm.aclose()
    assert completion.data == {"answer": "hi", "points": ["x"], "score": 3}
    assert completion.usage.calls == 2
    repair = openai_stub.requests[1]["messages"][-1]
    assert repair["role"] == "user" and "could not be used" in repair["content"]
    async with database.session() as session:
        assert len((await session.scalars(select(ModelCallRow))).all()) == 2  # both calls cost tokens


async def test_schema_violation_is_repaired_and_persistent_garbage_raises(openai_stub, make_settings) -> None:
    llm = _llm(make_settings)
    replies = iter(
        [json.dumps({"answer": 5, "points": [], "score": 1}), "{not json", "still not json", "nope"]
    )
    openai_stub.responder = lambda body: next(replies)
    with pytest.raises(ModelOutputInvalid):
        await llm.complete(MESSAGES, purpose="test", schema=SCHEMA)  # wrong type, then garbage
    with pytest.raises(ModelOutputInvalid):
        await llm.complete(MESSAGES, purpose="test", schema=SCHEMA)  # garbage, then garbage
    await llm.aclose()
    assert "$.answer must be of type string" in request_text(openai_stub.requests[1])


def test_extract_json_object_handles_fences_prose_and_nesting() -> None:
    assert extract_json_object('```json\n{"a": {"b": [1, 2]}}\n```') == {"a": {"b": [1, 2]}}
    assert extract_json_object('Here it is: {"a": 1} hope that helps {"b": 2}') == {"a": 1}
    assert extract_json_object('{broken {"a": 1}') == {"a": 1}
    assert extract_json_object("[1, 2]") is None
    assert extract_json_object("") is None


async def test_no_key_needed_for_a_local_server_but_required_for_openai(openai_stub, make_settings) -> None:
    llm = _llm(make_settings, OPENAI_API_KEY="")
    completion = await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert completion.text == "stub answer"
    official = LLM(make_settings(OPENAI_API_KEY="", OPENAI_BASE_URL=""))
    with pytest.raises(ConfigError) as info:
        await official.complete(MESSAGES, purpose="test")
    assert "OPENAI_API_KEY" in info.value.user_message


async def test_input_budget_leaves_room_for_fallback_instructions(openai_stub, make_settings) -> None:
    llm = _llm(make_settings, MAX_INPUT_TOKENS="1000")
    openai_stub.reject_json_schema = True
    openai_stub.reject_json_object = True
    replies = iter(["nope", json.dumps({"answer": "hi", "points": [], "score": None})])
    openai_stub.responder = lambda body: next(replies)
    budget = llm.input_budget(SCHEMA)
    assert 0 < budget < 1000
    filler = "lorem ipsum " * 2000
    system = {"role": "system", "content": "You answer briefly."}
    room = budget - llm.tokens.count_messages([system, {"role": "user", "content": ""}])
    messages = [system, {"role": "user", "content": llm.tokens.truncate(filler, room)}]
    assert llm.tokens.count_messages(messages) <= budget
    completion = await llm.complete(messages, purpose="test", schema=SCHEMA)  # text mode + a repair
    await llm.aclose()
    assert completion.data is not None
    assert all(llm.tokens.count_messages(r["messages"]) <= 1000 for r in openai_stub.requests)


async def test_no_repair_when_the_caller_left_no_room(openai_stub, make_settings) -> None:
    llm = _llm(make_settings, MAX_INPUT_TOKENS="1000")
    openai_stub.responder = lambda body: "not json"
    system = {"role": "system", "content": "You answer briefly."}
    room = 995 - llm.tokens.count_messages([system, {"role": "user", "content": ""}])
    messages = [system, {"role": "user", "content": llm.tokens.truncate("lorem ipsum " * 2000, room)}]
    with pytest.raises(ModelOutputInvalid):
        await llm.complete(messages, purpose="test", schema=SCHEMA)
    await llm.aclose()
    assert len(openai_stub.requests) == 1


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_base_url_without_v1_is_tried_with_v1(openai_stub, make_settings, suffix) -> None:
    """OPENAI_BASE_URL=http://host:port (no /v1) against a server living under /v1, like Ollama."""
    openai_stub.v1_only = True
    root = f"http://127.0.0.1:{openai_stub.port}{suffix}"
    llm = _llm(make_settings, OPENAI_BASE_URL=root)
    first = await llm.complete(MESSAGES, purpose="test")
    second = await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert first.text == second.text == "stub answer"
    assert len(openai_stub.requests) == 2  # the 404s at the root are not model calls; /v1 is remembered


@pytest.mark.parametrize("base", ["/v1", "/v1/"])
async def test_base_url_with_v1_and_trailing_slash_work_as_given(openai_stub, make_settings, base) -> None:
    openai_stub.v1_only = True
    llm = _llm(make_settings, OPENAI_BASE_URL=f"http://127.0.0.1:{openai_stub.port}{base}")
    completion = await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert completion.text == "stub answer"


async def test_a_base_url_that_is_not_a_model_server_says_what_to_check(web, make_settings) -> None:
    """404 both as given and under /v1: the person is told which settings to check."""
    llm = _llm(make_settings, OPENAI_BASE_URL=web.url("/somewhere"))
    with pytest.raises(ModelUnavailable) as info:
        await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert "OPENAI_BASE_URL" in info.value.user_message and "OPENAI_MODEL" in info.value.user_message
    assert web.hits["/somewhere/chat/completions"] == 1 and web.hits["/somewhere/v1/chat/completions"] == 1


async def test_a_refused_optional_parameter_is_dropped_and_remembered(openai_stub, make_settings) -> None:
    llm = _llm(make_settings)
    openai_stub.raw_next(
        json.dumps({"error": {"message": "Unrecognized request argument supplied: stream_options"}}),
        status=400,
    )
    first = await llm.complete(MESSAGES, purpose="test")
    second = await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert first.text == second.text == "stub answer"
    assert "stream_options" in openai_stub.requests[0]
    assert all("stream_options" not in body for body in openai_stub.requests[1:])
    assert all(body["stream"] is True for body in openai_stub.requests)  # still streamed
    assert len(openai_stub.requests) == 3


async def test_a_server_error_mentioning_a_stream_is_an_outage_not_a_refusal(
    openai_stub, make_settings
) -> None:
    llm = _llm(make_settings)
    openai_stub.raw_next(json.dumps({"error": {"message": "upstream stream closed early"}}), status=502)
    completion = await llm.complete(MESSAGES, purpose="test")
    await llm.aclose()
    assert completion.text == "stub answer"
    assert openai_stub.requests[1]["stream"] is True  # retried as it was
