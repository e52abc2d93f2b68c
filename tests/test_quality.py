"""The answer checks on real text: a good summary of the seed article passes, each kind of junk seen
from small models is named, and follow-up answers are sanity-checked."""

from __future__ import annotations

import pytest

from ringkas.extract import article_from_file
from ringkas.model_server.errors import context_overflow, format_rejected, unsupported_parameter
from ringkas.model_server.json_output import close_truncated, output_tokens_for
from ringkas.prompts import load_prompt
from ringkas.quality.answer import check_answer
from ringkas.quality.summary import SummaryText, check_summary, instruction_texts
from ringkas.summarize import SUMMARY_SCHEMA
from tests.conftest import FIXTURES

SEED = article_from_file(FIXTURES / "seed-article-id.html")
SOURCE = f"{SEED.title}\n{SEED.text}"
INSTRUCTIONS = instruction_texts(
    load_prompt("summary").render(language="Indonesian", tag="source-x"), schema=SUMMARY_SCHEMA
)
GOOD_ID = SummaryText(
    title="Microsoft resmi perpanjang kemitraan dengan OpenAI",
    tldr="Microsoft resmi mengumumkan kelanjutan kemitraannya dengan OpenAI lewat investasi besar.",
    key_points=(
        "Semua infrastruktur cloud OpenAI akan berjalan di Microsoft Azure.",
        "Microsoft akan memakai produk OpenAI untuk meningkatkan layanannya sendiri.",
        "Satya Nadella menyebut kemitraan ini bertujuan memajukan penelitian AI.",
    ),
    why_it_matters="Kemitraan ini memperkuat posisi Microsoft dan Azure dalam persaingan AI.",
)
GOOD_EN = SummaryText(
    title="Microsoft extends its partnership with OpenAI",
    tldr="Microsoft officially announced it is extending its partnership with OpenAI, with a big investment.",
    key_points=(
        "All of OpenAI's cloud infrastructure will run on Microsoft Azure.",
        "Microsoft will build OpenAI's products into its own services.",
        "CEO Satya Nadella said the aim is to advance AI research and democratize AI.",
    ),
    why_it_matters="It cements Azure as the platform behind ChatGPT and DALL-E.",
)


def _check(summary: SummaryText, language: str = "id") -> tuple[str, ...]:
    return check_summary(
        summary, article_text=SOURCE, article_language="id", language=language, instructions=INSTRUCTIONS
    ).problems


def test_a_real_summary_passes_in_the_articles_language_and_in_another() -> None:
    assert _check(GOOD_ID, "id") == ()
    assert _check(GOOD_EN, "en") == ()


@pytest.mark.parametrize(
    ("summary", "language", "expected"),
    [
        (GOOD_EN, "id", "written in 'en', not 'id'"),
        (GOOD_ID, "en", "not 'en'"),
        (
            SummaryText("t", "One sentence, at most 30 words", ("{", "title"), "One or two sentences"),
            "id",
            "JSON punctuation",
        ),
        (
            SummaryText(GOOD_ID.title, GOOD_ID.tldr, ("{'tldr':{ type':'string','description':",), ""),
            "id",
            "a JSON fragment",
        ),
        (
            SummaryText(
                GOOD_ID.title, "3 to 5 one-sentence points, most important first", GOOD_ID.key_points, ""
            ),
            "id",
            "repeats the instructions",
        ),
        (
            SummaryText(GOOD_ID.title, GOOD_ID.tldr, (GOOD_ID.key_points[0],) * 5, ""),
            "id",
            "repeat each other",
        ),
        (SummaryText(GOOD_ID.title, GOOD_ID.tldr, (), ""), "id", "no key points"),
        (
            SummaryText(
                "Manchester United menang derby",
                "Manchester United mengalahkan Liverpool 3-1 di Old Trafford.",
                (
                    "Bruno Fernandes mencetak dua gol di babak kedua.",
                    "Mohamed Salah gagal mengeksekusi penalti pada menit ke-70.",
                ),
                "",
            ),
            "id",
            "names things",
        ),
    ],
)
def test_each_kind_of_junk_is_named(summary: SummaryText, language: str, expected: str) -> None:
    problems = _check(summary, language)
    assert any(expected in p for p in problems), problems


def test_follow_up_answers_must_share_something_with_the_article() -> None:
    sources = [SOURCE]
    assert check_answer(
        "Microsoft akan memakai Azure untuk semua infrastruktur OpenAI.", answered=True, sources=sources
    ).ok
    assert check_answer("Azure will host all of it.", answered=True, sources=sources).ok  # a name is shared
    assert check_answer("The article does not say how much was invested.", answered=True, sources=sources).ok
    assert check_answer("Artikel tidak menyebutkan nilai investasinya.", answered=True, sources=sources).ok
    assert not check_answer(
        "Quantum pineapple harmonies drift beneath velvet spreadsheets tonight.",
        answered=True,
        sources=sources,
    ).ok
    assert not check_answer("{ } [ ] , : ,", answered=True, sources=sources).ok
    assert not check_answer(
        "azure azure azure azure azure azure azure azure azure", answered=True, sources=sources
    ).ok


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (500, "1 validation error ... Input should be 'text' or 'json_object' [type=literal_error]", True),
        (400, "response_format json_schema is not supported", True),
        (422, "Value error, 'json_schema' is not a valid ResponseFormat", True),
        (404, "model 'x' not found", False),
        (500, "CUDA out of memory", False),
    ],
)
def test_response_format_refusals_are_read_from_the_message(
    status: int, message: str, expected: bool
) -> None:
    assert format_rejected(status, message) is expected


def test_context_overflow_wordings_of_each_server() -> None:
    llama_server = context_overflow(
        400,
        "the request exceeds the available context size, try increasing it",
        {"error": {"type": "exceed_context_size_error", "n_prompt_tokens": 9000, "n_ctx": 8192}},
    )
    assert llama_server is not None and (llama_server.context_tokens, llama_server.prompt_tokens) == (
        8192,
        9000,
    )
    vllm = context_overflow(
        400,
        "This model's maximum context length is 2048 tokens. However, you requested "
        "3000 tokens (2500 in the messages, 500 in the completion).",
    )
    assert vllm is not None and (vllm.context_tokens, vllm.prompt_tokens) == (2048, 2500)
    openai = context_overflow(
        400,
        "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in 9100 tokens. Please reduce the length of the messages.",
    )
    assert openai is not None and (openai.context_tokens, openai.prompt_tokens) == (8192, 9100)
    llama_cpp_python = context_overflow(400, "Requested tokens (3100) exceed context window of 2048")
    assert llama_cpp_python is not None and (
        llama_cpp_python.context_tokens,
        llama_cpp_python.prompt_tokens,
    ) == (2048, 3100)
    assert context_overflow(400, "temperature must be between 0 and 2") is None


def test_refused_parameters_are_named() -> None:
    assert (
        unsupported_parameter(
            "Unrecognized request argument supplied: repeat_penalty", {"repeat_penalty", "stream"}
        )
        == "repeat_penalty"
    )
    assert (
        unsupported_parameter("stream_options is not supported", {"stream", "stream_options"})
        == "stream_options"
    )
    assert unsupported_parameter("frequency_penalty not allowed", {"stream"}) is None  # not sent: not ours
    assert unsupported_parameter("upstream stream closed early", {"stream"}) is None  # an outage


def test_a_cut_off_reply_keeps_its_complete_members() -> None:
    cut = '{"title": "T", "tldr": "A sentence.", "why_it_matters": "W.", "key_points": ["one", "two", "thr'
    assert close_truncated(cut) == {
        "title": "T",
        "tldr": "A sentence.",
        "why_it_matters": "W.",
        "key_points": ["one", "two"],
    }
    assert close_truncated('{"title": "T", "tl') == {"title": "T"}
    assert close_truncated("no json here") is None


def test_output_budget_follows_the_schema_bounds_and_the_tokenizer() -> None:
    plain = output_tokens_for(SUMMARY_SCHEMA)
    assert plain is not None and 400 < plain < 1_200
    assert output_tokens_for(SUMMARY_SCHEMA, 2.5) > 2 * plain  # type: ignore[operator]
    assert output_tokens_for({"type": "object", "properties": {"a": {"type": "string"}}}) is None
