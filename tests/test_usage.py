"""Usage reports: tokens recorded by real model calls, summed by feature, channel and model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from ringkas.documents import UsageContext
from ringkas.fetch import SafeFetcher
from ringkas.llm import LLM
from ringkas.qa import QuestionService
from ringkas.service import Ringkas
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ModelCallRow
from ringkas.terminal import format_usage
from ringkas.usage import usage_report
from tests.conftest import FIXTURES
from tests.support.openai_stub import summary_from_source

REPO = Path(__file__).resolve().parents[1]
EN_PAGE = (FIXTURES / "summaries" / "injection-en.html").read_text(encoding="utf-8")


def _fixed_usage(body: dict) -> dict:
    """A chat completion that reports 100 prompt and 20 completion tokens, whatever was asked."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    props = schema.get("properties", {})
    content = summary_from_source(body, schema) or {
        name: (["point one", "point two", "point three"] if spec.get("type") == "array" else "text")
        for name, spec in props.items()
    }
    if "answered" in props:
        content["answered"] = False
    return {
        "id": "chatcmpl-usage",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": json.dumps(content)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


async def test_report_sums_real_model_calls(openai_stub, web, database, make_settings) -> None:
    openai_stub.responder = _fixed_usage
    settings = make_settings()
    fetcher = SafeFetcher(allow_hosts=settings.fetch_allow_hosts, timeout=10)
    llm = LLM(settings, db=database)
    try:
        ringkas = Ringkas(settings=settings, db=database, fetcher=fetcher, llm=llm)
        url = web.add("/news/chip", EN_PAGE)
        result = await ringkas.summarize(url, context=UsageContext(team_id="T1", channel_id="C42"))
        await ringkas.summarize(url, context=UsageContext(team_id="T1", channel_id="C42"))  # cached: free
        questions = QuestionService(settings=settings, db=database, llm=llm, ringkas=ringkas)
        await questions.answer(
            "Who won the chess match?",
            [result.article.id or 0],
            team_id="T1",
            channel_id="C42",
            thread_ts="1.0",
            user_id="U1",
        )
    finally:
        await fetcher.aclose()
        await llm.aclose()

    report = await usage_report(database, days=7)
    features = {line.label: line for line in report.by_feature}
    assert features["summaries"].calls == 1
    assert features["summaries"].prompt_tokens == 100
    assert features["questions"].calls == len(openai_stub.requests) - 1
    assert report.total.calls == len(openai_stub.requests)
    assert report.total.total_tokens == 120 * len(openai_stub.requests)
    assert [line.label for line in report.by_channel] == ["C42"]
    assert [line.label for line in report.by_model] == [settings.openai_model]
    assert report.summaries_made == 1
    assert report.questions_asked == 1
    assert report.questions_unanswered == 1

    text = format_usage(report)
    assert "summaries" in text and "questions" in text and "C42" in text and "total" in text


async def test_report_window_excludes_older_calls(database) -> None:
    async with database.session() as session:
        session.add(
            ModelCallRow(
                purpose="digest",
                model="m",
                prompt_tokens=5,
                completion_tokens=1,
                created_at=utcnow() - timedelta(days=40),
            )
        )
        session.add(
            ModelCallRow(
                purpose="digest",
                model="m",
                prompt_tokens=7,
                completion_tokens=2,
                created_at=utcnow() - timedelta(days=2),
            )
        )
    report = await usage_report(database, days=30)
    assert [(x.label, x.calls, x.prompt_tokens) for x in report.by_feature] == [("digests", 1, 7)]
    assert [x.label for x in report.by_channel] == ["terminal"]


def test_usage_command_prints_the_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_", "DIGEST_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'ringkas.db'}"
    out = subprocess.run(
        [sys.executable, str(REPO / "bot.py"), "usage", "--days", "7"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage since ")
    assert "0 summaries made" in out.stdout
    bad = subprocess.run(
        [sys.executable, str(REPO / "bot.py"), "usage", "--days", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
