"""Summaries against stand-ins of real model servers (llama-cpp-python, llama-server, vLLM, Ollama).

Each stand-in counts tokens with its own tokenizer (more than tiktoken), has its own context window,
error wording, status codes and parameter support (tests/support/model_servers.py). What must hold:
a summary that passes the answer checks, or a plain message saying what the model could not do, and
never a request the server refuses twice for the same reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ringkas.config import Settings
from ringkas.documents import Article
from ringkas.errors import ModelOutputInvalid, ModelUnavailable
from ringkas.extract import article_from_file
from ringkas.llm import LLM
from ringkas.quality.summary import SummaryText, check_summary
from ringkas.summarize import SUMMARY_OUTPUT_TOKENS, SUMMARY_SCHEMA, Summarizer
from tests.conftest import FIXTURES
from tests.support import model_servers
from tests.support.model_servers import ModelServerStub
from tests.support.openai_stub import summary_from_source

ROOT = Path(__file__).resolve().parent.parent
SEED = article_from_file(FIXTURES / "seed-article-id.html")
LONG_EN = (FIXTURES / "qa_long_article.txt").read_text(encoding="utf-8")
_RU = [
    "Компания OpenAI представила новую языковую модель, которая работает быстрее предыдущей версии.",
    "По словам разработчиков, стоимость обработки одного миллиона токенов снизилась почти вдвое.",
    "Эксперты отмечают, что конкуренция на рынке искусственного интеллекта заметно усилилась.",
    "Google и Anthropic также объявили о выпуске обновлённых моделей в этом квартале.",
    "Российские банки начали тестировать генеративные модели для обслуживания клиентов.",
    "Регуляторы Европейского союза готовят новые правила для систем высокого риска.",
    "Исследователи из Сколтеха опубликовали открытый набор данных для обучения моделей.",
    "Стартап из Новосибирска привлёк инвестиции на разработку специализированных чипов.",
]
LONG_RU = "\n\n".join(
    " ".join(_RU[(i + j) % len(_RU)] for j in range(5)) + f" Раздел {i}." for i in range(60)
)


def _article(text: str, *, title: str, language: str) -> Article:
    return Article(url="https://news.example/a", canonical_url="https://news.example/a", text=text,
                   title=title, language=language, site_name="Example")  # fmt: skip


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Any]]:
    started: list[ModelServerStub] = []

    async def start(kind: str, **options: Any) -> ModelServerStub:
        server = await ModelServerStub(kind, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
def llm_for(tmp_path: Path) -> Callable[..., LLM]:
    made: list[LLM] = []

    def build(server: ModelServerStub, **env: str) -> LLM:
        values = {
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_MODEL": server.model_id,
            "OPENAI_MAX_RETRIES": "2",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}",
            "MODEL_PROFILE_PATH": str(tmp_path / "model_servers.json"),
            **env,
        }
        llm = LLM(Settings.from_env(values, dotenv=False), backoff_base=0.01, backoff_max=0.02)
        made.append(llm)
        return llm

    return build


def _formats(server: ModelServerStub) -> list[str]:
    out = []
    for body in server.requests:
        fmt = body.get("response_format") or {}
        out.append(fmt.get("type", "none") + ("+schema" if "schema" in fmt else ""))
    return out


def _passes(summary: Any, article: Article, language: str) -> bool:
    text = SummaryText(summary.title or "", summary.tldr, tuple(summary.key_points), summary.why_it_matters)
    source = f"{article.title}\n{article.text}"
    verdict = check_summary(text, article_text=source, article_language=article.language,
                            language=language, instructions=[])  # fmt: skip
    return verdict.ok


async def test_llama_cpp_python_refuses_json_schema_with_500_and_the_fallback_is_remembered(
    servers, llm_for, caplog
) -> None:
    server = await servers("llama-cpp-python", context_tokens=2048, token_factor=1.6)
    caplog.set_level(logging.INFO)
    llm = llm_for(server)
    summary = await Summarizer(llm).summarize(SEED, "id")
    await llm.aclose()
    assert _passes(summary, SEED, "id")
    # One refused json_schema request, not five retries; then llama-cpp-python's own schema constraint.
    assert _formats(server)[:2] == ["json_schema", "json_object+schema"]
    assert _formats(server).count("json_schema") == 1
    assert any("falling back" in r.getMessage() for r in caplog.records)

    # A restart: the server's answer is remembered, so no request pays the refusal again.
    server.requests.clear()
    again = llm_for(server)
    await Summarizer(again).summarize(SEED, "id")
    await again.aclose()
    assert "json_schema" not in _formats(server)


async def test_llama_server_window_from_props_and_its_tokenizer_keep_every_request_inside(
    servers, llm_for, caplog
) -> None:
    server = await servers("llama-server", context_tokens=2048, token_factor=1.6)
    caplog.set_level(logging.INFO, logger="ringkas.llm")
    llm = llm_for(server)
    article = _article(LONG_EN, title="Nusantara Labs launches Garuda-2", language="en")
    summary = await Summarizer(llm).summarize(article, "en")
    await llm.aclose()
    assert _passes(summary, article, "en")
    assert server.overflows == 0  # nothing refused, no reply cut short by the window
    for body, prompt in zip(server.requests, server.prompt_tokens_seen, strict=True):
        assert prompt + int(body.get("max_tokens") or 0) <= 2048
    budget = [r for r in caplog.records if r.getMessage() == "model server budget"]
    assert len(budget) == 1 and budget[0].context_tokens == 2048 and budget[0].context_source == "/props"
    assert all(
        body.get("repeat_penalty") == 1.1 and body.get("frequency_penalty") for body in server.requests
    )
    assert all(body.get("stream") is True for body in server.requests)


@pytest.mark.parametrize(
    ("kind", "wording"),
    [
        ("llama-server", "exceeds the available context size"),
        ("vllm", "maximum context length"),
        ("llama-cpp-python", "exceed context window"),
    ],
)
async def test_a_window_nobody_advertised_is_learned_from_the_first_refusal(
    servers, llm_for, caplog, kind: str, wording: str
) -> None:
    server = await servers(kind, context_tokens=4096, token_factor=1.5, advertise=False, tokenize=False)
    caplog.set_level(logging.INFO, logger="ringkas")
    llm = llm_for(server)
    article = _article(LONG_EN, title="Nusantara Labs launches Garuda-2", language="en")
    summary = await Summarizer(llm).summarize(article, "en")
    assert _passes(summary, article, "en")
    assert server.overflows >= 1  # learned the hard way, once
    assert llm.profile.context_tokens == 4096 and llm.profile.context_source == "context error"
    assert any("splitting the text further" in r.getMessage() or "budget lowered" in r.getMessage()
               for r in caplog.records)  # fmt: skip

    # What was learned holds for the next article: no new refusal.
    refused = server.overflows
    other = _article(LONG_EN.replace("Garuda", "Merapi"), title="Merapi", language="en")
    await Summarizer(llm).summarize(other, "en")
    await llm.aclose()
    assert server.overflows == refused


async def test_a_tokenizer_counting_far_more_than_tiktoken_is_measured_before_splitting(
    servers, llm_for
) -> None:
    # Russian: small models' tokenizers count ~2.5x what o200k counts.
    server = await servers("vllm", context_tokens=8192, token_factor=2.54)
    llm = llm_for(server)
    article = _article(LONG_RU, title="Новая модель OpenAI", language="ru")
    summary = await Summarizer(llm).summarize(article, "ru")
    await llm.aclose()
    assert _passes(summary, article, "ru")
    assert server.overflows == 0
    assert llm.profile.ratio_source == "tokenize" and llm.profile.token_ratio >= 2.5
    assert all(body.get("repetition_penalty") == 1.05 for body in server.requests)


async def test_ollama_window_from_api_show_keeps_prompts_from_being_cut(servers, llm_for) -> None:
    server = await servers("ollama", context_tokens=2048, token_factor=1.5)
    llm = llm_for(server)
    article = _article(LONG_EN, title="Nusantara Labs launches Garuda-2", language="en")
    summary = await Summarizer(llm).summarize(article, "en")
    await llm.aclose()
    assert _passes(summary, article, "en")
    assert server.truncated_prompts == 0 and server.overflows == 0
    assert llm.profile.kind == "ollama" and llm.profile.context_source == "/api/show"


async def test_looping_key_points_end_in_a_plain_message(servers, llm_for) -> None:
    server = await servers("llama-server", context_tokens=8192)
    server.responder = model_servers.looping_summary
    llm = llm_for(server)
    with pytest.raises(ModelOutputInvalid) as caught:
        await Summarizer(llm).summarize(SEED, "id")
    await llm.aclose()
    assert "could not produce a usable summary" in caught.value.user_message
    assert "repeat" in caught.value.user_message
    schema = server.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["key_points"]["maxItems"] == 5  # the grammar stops the loop
    assert len(server.requests) == 2  # the answer, then one simpler request


async def test_a_reply_cut_off_after_its_required_fields_is_salvaged(servers, llm_for) -> None:
    server = await servers("llama-cpp-python", context_tokens=8192)

    def runaway_last_point(body: dict[str, Any]) -> str:
        good = summary_from_source(body, {"properties": {"tldr": {}, "why_it_matters": {}}}) or {}
        ordered = {k: good[k] for k in ("title", "tldr", "why_it_matters")}
        ordered["key_points"] = [*good["key_points"], "and then " * 3000]
        return json.dumps(ordered, ensure_ascii=False)

    server.responder = runaway_last_point
    llm = llm_for(server)
    summary = await Summarizer(llm).summarize(SEED, "id")
    await llm.aclose()
    assert _passes(summary, SEED, "id")
    assert len(summary.key_points) == 3  # the cut-off fourth point is dropped, the rest kept
    summary_requests = [
        b for b in server.requests if b.get("response_format", {}).get("type") == "json_object"
    ]
    assert len(summary_requests) == 1  # no second request for a cut-off reply that was complete enough
    # max_tokens sized to what the bounded schema needs in this server's tokens
    assert int(server.requests[-1]["max_tokens"]) == llm.output_tokens(SUMMARY_SCHEMA, SUMMARY_OUTPUT_TOKENS)


async def test_a_cut_off_reply_without_its_required_fields_asks_for_less(servers, llm_for) -> None:
    server = await servers("vllm", context_tokens=8192)
    server.responder = (
        model_servers.looping_summary
    )  # key points until max_tokens: why_it_matters never comes
    server.requests.clear()
    # vLLM with bounds refused: the loop is only stopped by max_tokens.
    server.kind = model_servers.ServerKind("vllm", True, False, "vllm")
    llm = llm_for(server)
    llm.profile.schema_bounds = False
    with pytest.raises(ModelOutputInvalid):
        await Summarizer(llm).summarize(SEED, "id")
    await llm.aclose()
    second = server.requests[1]["messages"][-1]["content"]
    assert "cut off because it was too long" in second and "at most 3 key points" in second


@pytest.mark.parametrize(
    ("responder", "language", "problem"),
    [
        (model_servers.off_topic_summary, "id", "names things the article does not"),
        (model_servers.wrong_language_summary, "en", "not 'en'"),
        (model_servers.english_summary, "id", "not 'id'"),
        (model_servers.echoed_schema_summary, "id", "JSON"),
    ],
)
async def test_answers_that_are_no_summary_of_this_article_are_never_posted(
    servers, llm_for, caplog, responder: Callable[[dict[str, Any]], str], language: str, problem: str
) -> None:
    # The weakness is logged once per model and process: a model id of its own for this case.
    server = await servers(
        "llama-server", context_tokens=8192, model_id=f"weak-{responder.__name__}-{language}"
    )
    server.responder = responder
    caplog.set_level(logging.WARNING, logger="ringkas.quality")
    llm = llm_for(server)
    for _ in range(2):
        with pytest.raises(ModelOutputInvalid) as caught:
            await Summarizer(llm).summarize(SEED, language)
        assert caught.value.user_message.startswith("The language model could not produce a usable summary")
        assert problem in caught.value.user_message
    await llm.aclose()
    assert len(server.requests) == 4  # per summary: the request and one simpler retry, no more
    assert "3 key points" not in json.dumps(server.requests[0]["response_format"])
    assert (
        server.requests[1]["response_format"]["json_schema"]["schema"]["properties"]["key_points"]["maxItems"]
        == 3
    )
    weak = [r for r in caplog.records if "unusable answers" in r.getMessage()]
    assert len(weak) == 1  # the model's weakness is logged once, not per summary


async def test_a_bad_first_answer_is_followed_by_a_simpler_request_that_can_succeed(servers, llm_for) -> None:
    server = await servers("llama-server", context_tokens=8192)
    answers = iter([model_servers.off_topic_summary, summary_for_any])
    server.responder = lambda body: next(answers)(body)
    llm = llm_for(server)
    summary = await Summarizer(llm).summarize(SEED, "id")
    await llm.aclose()
    assert _passes(summary, SEED, "id") and len(server.requests) == 2
    assert "Microsoft" in summary.tldr + " ".join(summary.key_points)


def summary_for_any(body: dict[str, Any]) -> str:
    return json.dumps(summary_from_source(body, {"properties": {"tldr": {}}}))


async def test_a_slow_server_that_keeps_writing_is_not_cut_off_but_a_total_deadline_holds(
    servers, llm_for
) -> None:
    server = await servers("llama-server", context_tokens=8192)
    server.chunk_delay = 0.3  # ~3 s for the answer, each chunk well inside OPENAI_TIMEOUT=1
    llm = llm_for(server, OPENAI_TIMEOUT="1", OPENAI_MAX_RETRIES="0")
    summary = await Summarizer(llm).summarize(SEED, "id")
    assert _passes(summary, SEED, "id") and len(server.requests) == 1

    server.chunk_delay = 1.5  # still writing, but past OPENAI_TOTAL_TIMEOUT
    deadline = llm_for(server, OPENAI_TIMEOUT="2", OPENAI_TOTAL_TIMEOUT="5", OPENAI_MAX_RETRIES="0")
    with pytest.raises(ModelUnavailable) as caught:
        await Summarizer(deadline).summarize(_article(SEED.text + " Update.", title=SEED.title or "",
                                                      language="id"), "id")  # fmt: skip
    await llm.aclose()
    await deadline.aclose()
    assert "OPENAI_TOTAL_TIMEOUT" in caught.value.user_message


async def test_a_stream_only_server_answers_plain_requests_too(servers, llm_for) -> None:
    server = await servers("ollama", context_tokens=8192, stream_only=True)
    llm = llm_for(server, OPENAI_STREAM="off")
    summary = await Summarizer(llm).summarize(SEED, "id")
    await llm.aclose()
    assert _passes(summary, SEED, "id")
    assert "stream" not in server.requests[0]


async def test_bot_summarize_against_llama_cpp_python_with_a_small_window(servers, tmp_path) -> None:
    server = await servers("llama-cpp-python", context_tokens=2048, token_factor=1.6,
                           model_id="/models/SmolLM2-135M-Instruct.Q4_1.gguf")  # fmt: skip
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DATABASE_"))},
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_MODEL": server.model_id,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "LOG_FORMAT": "text",
    }
    page = FIXTURES / "seed-article-id.html"
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bot.py"), "summarize", str(page), env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "TL;DR" in text and "Microsoft" in text
    footer = text.strip().splitlines()[-1]
    assert "SmolLM2-135M-Instruct.Q4_1" in footer and "/models/" not in footer
    assert (tmp_path / "model_servers.json").is_file()  # what was learned survives a restart
    learned = json.loads((tmp_path / "model_servers.json").read_text())
    assert next(iter(learned.values()))["format_mode"] == "json_object_schema"
