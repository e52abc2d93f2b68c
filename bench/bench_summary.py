"""Prompt overhead of a summary: input tokens beyond the article text, for several article sizes.

    python bench/bench_summary.py [--max-input-tokens 12000]

Runs the real Summarizer against the local OpenAI stand-in (tests/support) and counts every request
with tiktoken: the messages (system prompt, framing, metadata, data-block tags) and, in json_schema
mode, the schema sent in response_format (servers count it as input too). "Overhead" is everything
except the article text itself; long articles also pay for map notes read again by reduce steps.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import _setup  # noqa: F401  (first: the project's path and the tokenizer's files)

from ringkas.config import Settings
from ringkas.documents import Article
from ringkas.llm import JSON_OBJECT, JSON_SCHEMA, LLM, PLAIN_TEXT
from ringkas.summarize import Summarizer
from ringkas.tokens import TokenCounter
from tests.support.openai_stub import OpenAIStub

SIZES = (300, 1_000, 3_000, 10_000, 30_000, 100_000)
SENTENCES = [
    "The lab said its new model scores 12 points higher on the coding benchmark than last year's release.",
    "Prices for developers drop to 40 cents per million input tokens, a third of the previous tier.",
    "Analysts noted that the company still trails two rivals on long-context reasoning tasks.",
    "Regulators in the European Union asked for documentation of the training data within 90 days.",
    "The model will be available first in the United States and Indonesia, with other regions later.",
    "Engineers described a mixture-of-experts design that activates 20 billion parameters per token.",
]


def article_text(tokens: int, counter: TokenCounter) -> str:
    paragraphs: list[str] = []
    total = 0
    n = 0
    while total < tokens:
        paragraph = " ".join(SENTENCES[(n + i) % len(SENTENCES)] for i in range(4)) + f" (Section {n}.)"
        paragraphs.append(paragraph)
        total += counter.count(paragraph) + 1
        n += 1
    return "\n\n".join(paragraphs)


def notes_like_a_model(body: dict) -> str:
    """Summaries as JSON; notes about a tenth of the input (a realistic compression for news notes)."""
    fmt = body.get("response_format") or {}
    if fmt or "JSON" in body["messages"][0]["content"]:
        return json.dumps(
            {
                "title": "Lab ships cheaper model",
                "tldr": "The lab released a model that is cheaper and better at code.",
                "key_points": [
                    "It scores 12 points higher.",
                    "Prices drop by two thirds.",
                    "EU wants documents.",
                ],
                "why_it_matters": "Cheaper capable models shift what small teams can build.",
            }
        )
    words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    return "\n".join(
        f"- note {i} on the lab, its prices and its benchmark" for i in range(max(1, words // 90))
    )


async def measure(stub: OpenAIStub, settings: Settings, tokens: int, mode: str) -> dict[str, float]:
    llm = LLM(settings)
    llm.json_mode = mode
    counter = llm.tokens
    text = article_text(tokens, counter)
    article = Article(
        url="https://news.example/a",
        canonical_url="https://news.example/a",
        text=text,
        title="Lab ships cheaper model",
        site_name="news.example",
        published="2025-03-01",
        language="en",
    )
    stub.requests.clear()
    await Summarizer(llm).summarize(article, "en")  # the stand-in writes English
    await llm.aclose()
    sent = 0
    for request in stub.requests:
        sent += counter.count_messages(request["messages"])
        fmt = request.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            sent += counter.count(json.dumps(fmt["json_schema"]))
    article_tokens = counter.count(text)
    return {
        "article": article_tokens,
        "requests": len(stub.requests),
        "input": sent,
        "overhead": sent - article_tokens,
        "ratio": (sent - article_tokens) / article_tokens,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-input-tokens", type=int, default=12_000)
    args = parser.parse_args()
    stub = await OpenAIStub().start()
    stub.responder = notes_like_a_model
    settings = Settings.from_env(
        {
            "OPENAI_BASE_URL": stub.base_url,
            "OPENAI_API_KEY": "bench",
            "MAX_INPUT_TOKENS": str(args.max_input_tokens),
        },
        dotenv=False,
    )
    try:
        print(
            f"MAX_INPUT_TOKENS={args.max_input_tokens}, model {settings.openai_model}, "
            "summary in Indonesian\n"
        )
        print(
            f"{'article tok':>11} {'requests':>8} {'input tok':>10} {'overhead':>9} {'overhead/article':>17}"
        )
        for size in SIZES:
            row = await measure(stub, settings, size, JSON_SCHEMA)
            print(
                f"{row['article']:>11,} {row['requests']:>8} {row['input']:>10,} "
                f"{row['overhead']:>9,} {row['ratio']:>16.1%}"
            )
        print(
            "\nFixed overhead of one whole-article summary by structured-output mode (1,000-token article):"
        )
        for mode in (JSON_SCHEMA, JSON_OBJECT, PLAIN_TEXT):
            row = await measure(stub, settings, 1_000, mode)
            print(f"  {mode:<12} {row['overhead']:>6,} tokens ({row['ratio']:.1%} of the article)")
    finally:
        await stub.stop()


if __name__ == "__main__":
    asyncio.run(main())
