"""Follow-up questions through the running Slack app: thread mentions and /ask, with signed requests
against the local Slack, OpenAI and web stand-ins."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from ringkas.jobs.report import format_jobs
from ringkas.storage.tables import QuestionRow
from tests import slack_app as slack_fixtures
from tests.conftest import FIXTURES
from tests.slack_app import SlackApp, mention, next_ts
from tests.support.openai_stub import OpenAIStub, default_responder
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub

SEARCH_HTML = (FIXTURES / "qa_search_article.html").read_text(encoding="utf-8")
CHIP_HTML = (FIXTURES / "qa_chip_article.html").read_text(encoding="utf-8")
SEARCH_TITLE = "Search engines race to add AI answers"
make_slack_app = slack_fixtures.make_slack_app  # the running-app fixtures, used by the tests below
slack_app = slack_fixtures.slack_app


@pytest.fixture(autouse=True)
def answers_posted_whole(slack_stub: SlackStub) -> None:
    """These tests read answers as single posts: Slack refuses streams here (the streamed path, and this
    fallback itself, are tested in tests/test_slack_streaming.py)."""
    slack_stub.refuse_streams = "not_allowed_token_type"


def model(answers: list[str] | None = None, *, answered: bool = True) -> Callable[[dict[str, Any]], Any]:
    """Answers Q&A requests in turn (the last one repeats); summaries get the stand-in's default."""
    queue = list(answers or ["Bing shows AI answers for about 40 percent of US English searches."])

    def respond(body: dict[str, Any]) -> Any:
        fmt = body.get("response_format") or {}
        name = (fmt.get("json_schema") or {}).get("name")
        if name == "answer":
            text = queue.pop(0) if len(queue) > 1 else queue[0]
            return json.dumps({"answer": text, "answered": answered})
        if name == "keywords":
            return json.dumps({"keywords": []})
        return default_responder(body)

    return respond


def qa_bodies(stub: OpenAIStub) -> list[dict[str, Any]]:
    names = [((b.get("response_format") or {}).get("json_schema") or {}).get("name") for b in stub.requests]
    return [b for b, name in zip(stub.requests, names, strict=True) if name == "answer"]


def prompt_of(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def flat(message: dict[str, Any]) -> str:
    """Everything a person would read in a posted message: fallback text and all block texts."""
    parts = [str(message.get("text", ""))]
    for block in message.get("blocks") or []:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            parts.append(element.get("text", ""))
    return "\n".join(parts)


async def summarize_here(app: SlackApp, web: WebStub, path: str = "/search", html: str = SEARCH_HTML) -> str:
    """Share a link by mentioning the bot; returns the summary thread's ts."""
    url = web.add(path, html)
    ts = next_ts()
    assert await app.event(mention(f"<@UBOT> <{url}>", ts=ts)) == 200
    await app.settle()
    latest = await app.deps.state.latest_article("T0001", "C0001")
    assert latest is not None and latest[1] == ts
    return ts


async def rows(app: SlackApp) -> list[QuestionRow]:
    async with app.deps.ringkas.db.session() as session:
        return list(await session.scalars(select(QuestionRow).order_by(QuestionRow.id)))


async def test_thread_follow_ups_use_the_earlier_exchange(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model([
        "Bing shows AI answers for about 40 percent of English-language searches in the US.",
        "Google gave no comparable figure; it says AI Overviews reach over a billion people a month.",
    ])
    thread = await summarize_here(slack_app, web)
    posted_before = len(slack_stub.posted())

    first_ts = next_ts()
    q1 = "<@UBOT> What share of searches get AI answers on Bing?"
    assert await slack_app.event(mention(q1, ts=first_ts, thread_ts=thread)) == 200
    await slack_app.settle()
    q2 = "<@UBOT> and what about Google?"
    assert await slack_app.event(mention(q2, thread_ts=thread)) == 200
    await slack_app.settle()

    answers = slack_stub.posted()[posted_before:]
    assert len(answers) == 2
    assert all(a["thread_ts"] == thread and a["channel"] == "C0001" for a in answers)
    assert "about 40 percent of English-language searches" in flat(answers[0])
    assert f"|{SEARCH_TITLE}>" in flat(answers[0])  # names the article, linked
    assert "over a billion people" in flat(answers[1])

    first, second = qa_bodies(openai_stub)
    assert "<question>\nWhat share of searches get AI answers on Bing?\n</question>" in prompt_of(first)
    assert "UBOT" not in prompt_of(first)  # the bot mention is not part of the question
    history = prompt_of(second)
    history = history[history.index("<conversation") : history.index("</conversation>")]
    assert "Q: What share of searches get AI answers on Bing?" in history
    assert "A: Bing shows AI answers for about 40 percent" in history
    assert "<question>\nand what about Google?\n</question>" in prompt_of(second)

    reactions = [(c.method, c.args.get("name"), c.args.get("timestamp")) for c in slack_stub.calls
                 if c.method.startswith("reactions.")]
    assert ("reactions.add", "thinking_face", first_ts) in reactions
    assert ("reactions.remove", "thinking_face", first_ts) in reactions

    stored = await rows(slack_app)
    assert [r.question for r in stored] == [
        "What share of searches get AI answers on Bing?",
        "and what about Google?",
    ]
    assert all(r.thread_ts == thread and r.user_id == "U0001" and r.asked_via == "mention" for r in stored)
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in stored)


async def test_a_redelivered_question_is_answered_once(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model()
    thread = await summarize_here(slack_app, web)
    event = mention("<@UBOT> How many people see AI Overviews?", thread_ts=thread)
    assert await slack_app.event(event, event_id="EvQ1") == 200
    assert await slack_app.event(event, event_id="EvQ1", retry_num=1) == 200
    await slack_app.settle()
    assert len(qa_bodies(openai_stub)) == 1
    assert len(await rows(slack_app)) == 1


async def test_empty_mention_in_a_summary_thread_gets_a_hint(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    thread = await summarize_here(slack_app, web)
    before = len(slack_stub.posted())
    assert await slack_app.event(mention("<@UBOT>", thread_ts=thread)) == 200
    await slack_app.settle()
    (hint,) = slack_stub.posted()[before:]
    assert hint["thread_ts"] == thread
    assert "mention me with your question" in hint["text"]
    assert qa_bodies(openai_stub) == []


async def test_ask_answers_about_the_latest_article_in_its_thread(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model(["Sekitar 40 persen pencarian berbahasa Inggris di AS."])
    await summarize_here(slack_app, web, "/chips", CHIP_HTML)
    thread = await summarize_here(slack_app, web)  # the latest one
    before = len(slack_stub.posted())

    question = "Berapa persen pencarian di Bing yang sekarang menampilkan jawaban dari AI?"
    reply = await slack_app.command(question, command="/ask", user_id="U0777")
    assert reply.status == 200
    await slack_app.settle()

    (answer,) = slack_stub.posted()[before:]
    assert answer["channel"] == "C0001" and answer["thread_ts"] == thread
    shown = flat(answer)
    assert "<@U0777> bertanya" in shown  # who asked, in the question's language
    assert question in shown
    assert "Sekitar 40 persen pencarian" in shown
    assert f"|{SEARCH_TITLE}>" in shown
    (body,) = qa_bodies(openai_stub)
    assert "(detected: Indonesian)" in prompt_of(body)
    assert "Bing now shows AI-written answers" in prompt_of(body)
    assert "Rubin" not in prompt_of(body)  # only the latest article

    private = [b for _name, b in slack_stub.responses]
    assert all(b.get("response_type") == "ephemeral" for b in private)
    assert "I answered" in private[-1]["text"] and "stub.slack.test/archives/C0001" in private[-1]["text"]
    (row,) = await rows(slack_app)
    assert (row.user_id, row.thread_ts, row.asked_via, row.language) == ("U0777", thread, "ask", "id")


async def test_ask_with_a_link_fetches_that_article_and_starts_a_thread(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model([
        "Microsoft began testing ads inside AI answers with a small group of retailers in February.",
        "The article does not name the retailers.",
    ])
    url = web.add("/ads", SEARCH_HTML)
    reply = await slack_app.command(f"Who is testing ads inside AI answers? <{url}>", command="/ask")
    assert reply.status == 200
    await slack_app.settle()

    assert web.hits["/ads"] >= 1
    (answer,) = slack_stub.posted()
    assert "thread_ts" not in answer  # no summary thread for it here: a new top-level message
    assert "*<@U0001> asked:*\n> Who is testing ads inside AI answers?" in flat(answer)  # without the link
    assert f"|{SEARCH_TITLE}>" in flat(answer)
    (body,) = qa_bodies(openai_stub)
    assert "a format Microsoft began testing with a small group of retailers" in prompt_of(body)

    # The answer became a thread about the article: a follow-up there carries the exchange.
    (row,) = await rows(slack_app)
    reply_ts = row.thread_ts
    assert reply_ts is not None
    assert await slack_app.deps.state.articles_in_thread("T0001", "C0001", reply_ts) == row.article_ids
    assert await slack_app.event(mention("<@UBOT> which retailers?", thread_ts=reply_ts)) == 200
    await slack_app.settle()
    follow_up = qa_bodies(openai_stub)[-1]
    assert "Q: Who is testing ads inside AI answers?" in prompt_of(follow_up)
    assert slack_stub.posted()[-1]["thread_ts"] == reply_ts
    assert "does not name the retailers" in flat(slack_stub.posted()[-1])
    assert [r.thread_ts for r in await rows(slack_app)] == [reply_ts, reply_ts]


async def test_ask_usage_is_private(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    assert (await slack_app.command("", command="/ask", response_name="empty")).status == 200
    await slack_app.settle()
    assert (await slack_app.command("what is new?", command="/ask", response_name="none")).status == 200
    await slack_app.settle()

    replies = dict(slack_stub.responses)
    assert "/ask what does it say about pricing?" in replies["empty"]["text"]
    assert "No article has been summarized in this channel yet" in replies["none"]["text"]
    assert all(b["response_type"] == "ephemeral" for b in replies.values())
    assert slack_stub.posted() == []
    assert openai_stub.requests == []


async def test_ask_errors_are_told_plainly(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    missing = web.add("/gone", "not here", status=404, content_type="text/plain")
    await slack_app.command(f"what is this? {missing}", command="/ask", response_name="gone")
    await slack_app.settle()
    texts = [b["text"] for name, b in slack_stub.responses if name == "gone"]
    assert texts[-1].startswith(":warning: ")
    assert slack_stub.posted() == []
    assert qa_bodies(openai_stub) == []


async def test_model_text_cannot_ping_or_inject_markup(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model(
        [
            "**Yes.** Bing shows AI answers for 40 percent. "
            "@channel <!here> <@U0999> see <https://evil.test|this> & more"
        ]
    )
    thread = await summarize_here(slack_app, web)
    assert await slack_app.event(mention("<@UBOT> anything?", thread_ts=thread)) == 200
    await slack_app.settle()
    shown = flat(slack_stub.posted()[-1])
    assert "<!here>" not in shown and "<@U0999>" not in shown and "<https://evil.test" not in shown
    assert "@channel" not in shown and "@\u2060channel" in shown
    assert "*Yes.*" in shown and "&amp; more" in shown


async def test_ask_in_a_channel_the_bot_is_not_in_answers_through_the_command(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model(["About 40 percent."])
    await summarize_here(slack_app, web)
    slack_stub.overrides["chat.postMessage"] = lambda args: {"ok": False, "error": "not_in_channel"}
    await slack_app.command("How many searches show AI answers on Bing?", command="/ask", response_name="ask")
    await slack_app.settle()
    (answer,) = [b for _name, b in slack_stub.responses if b.get("response_type") == "in_channel"]
    assert "About 40 percent." in flat(answer) and f"|{SEARCH_TITLE}>" in flat(answer)


async def test_a_model_failure_in_a_thread_is_told_there(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    thread = await summarize_here(slack_app, web)
    openai_stub.fail_next(1, status=401)  # not retryable
    ts = next_ts()
    assert await slack_app.event(mention("<@UBOT> who runs DuckDuckGo?", ts=ts, thread_ts=thread)) == 200
    await slack_app.settle()
    told = slack_stub.posted()[-1]
    assert told["thread_ts"] == thread
    assert told["text"].startswith(":warning: I couldn't answer that. The model server rejected the API key")
    reactions = [(c.method, c.args.get("name")) for c in slack_stub.calls if c.args.get("timestamp") == ts]
    assert reactions == [("reactions.add", "thinking_face"), ("reactions.remove", "thinking_face"),
                         ("reactions.add", "warning")]
    assert await rows(slack_app) == []


async def test_ask_help_or_a_question_without_words_gets_usage(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    await summarize_here(slack_app, web)
    before = len(slack_stub.posted())
    for index, text in enumerate(["help", "HELP", " bantuan ", "?", "\u200b", "…?!"]):
        assert (await slack_app.command(text, command="/ask", response_name=f"u{index}")).status == 200
    await slack_app.settle()
    replies = dict(slack_stub.responses)
    assert len(replies) == 6
    for body in replies.values():
        assert body["response_type"] == "ephemeral"
        assert "/ask what does it say about pricing?" in body["text"]
    assert slack_stub.posted()[before:] == []
    assert qa_bodies(openai_stub) == []


async def test_two_questions_at_once_in_a_thread_are_answered_in_order(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model([
        "Bing shows AI answers for about 40 percent of English-language searches in the US.",
        "Google says AI Overviews reach over a billion people a month.",
    ])
    thread = await summarize_here(slack_app, web)
    before = len(slack_stub.posted())
    openai_stub.delay = 0.3
    # Both questions, each delivered as app_mention and as message, all at once.
    events = []
    for text in ("<@UBOT> What share of searches get AI answers on Bing?", "<@UBOT> and what about Google?"):
        ts = next_ts()
        events.append(mention(text, ts=ts, thread_ts=thread))
        events.append(slack_fixtures.message(text, ts=ts, thread_ts=thread))
    for event in events:
        assert await slack_app.event(event) == 200
    await slack_app.settle()

    answers = slack_stub.posted()[before:]
    assert [a["thread_ts"] for a in answers] == [thread, thread]
    assert "40 percent" in flat(answers[0]) and "billion" in flat(answers[1])
    # One waited for the other and carries it as context (the order the two reach the model is not fixed).
    first, second = (prompt_of(b) for b in qa_bodies(openai_stub))
    asked_first = first[first.index("<question>\n") + len("<question>\n") : first.index("\n</question>")]
    assert "<conversation" not in first
    assert f"Q: {asked_first}\nA: Bing shows AI answers" in second


async def test_a_model_outage_delays_the_answer_instead_of_an_error_reply(
    make_slack_app: slack_fixtures.MakeSlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    app = await make_slack_app(OPENAI_MAX_RETRIES="0")
    openai_stub.responder = model(["Bing shows AI answers for about 40 percent of US English searches."])
    thread = await summarize_here(app, web)
    before = len(slack_stub.posted())
    openai_stub.fail_next(2, status=500)  # the model is out for the first two runs of the question's job
    ts = next_ts()
    assert await app.event(mention("<@UBOT> What share of searches get AI answers?", ts=ts,
                                   thread_ts=thread)) == 200
    assert (await app.command(f"and on Bing? <{web.url('/search')}>", command="/ask",
                              response_name="ask")).status == 200
    await app.settle()
    answers = slack_stub.posted()[before:]
    assert len(answers) == 2 and all("40 percent" in flat(a) for a in answers)
    assert all(a["thread_ts"] == thread for a in answers)
    told = [b["text"] for _name, b in slack_stub.responses] + [a["text"] for a in answers]
    assert not any(":warning:" in text for text in told)  # waited, never told of an error
    reactions = [(c.method, c.args.get("name")) for c in slack_stub.calls if c.args.get("timestamp") == ts]
    assert reactions[-1] == ("reactions.remove", "thinking_face")
    assert ("reactions.add", "warning") not in reactions
    jobs = await app.deps.jobs.queue.counts()
    assert jobs[("question", "done")] == 1 and jobs[("ask", "done")] == 1


async def test_a_question_whose_model_stays_out_past_the_deadline_is_told_once(
    make_slack_app: slack_fixtures.MakeSlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    app = await make_slack_app(OPENAI_MAX_RETRIES="0", RETRY_DEADLINE="3")
    openai_stub.responder = model()
    thread = await summarize_here(app, web)
    before = len(slack_stub.posted())
    openai_stub.fail_next(100, status=500)
    assert await app.event(mention("<@UBOT> What share of searches get AI answers?", thread_ts=thread)) == 200
    await app.settle()
    (told,) = slack_stub.posted()[before:]
    assert told["thread_ts"] == thread and "gave up on this question" in told["text"]
    assert (await app.deps.jobs.queue.counts())[("question", "failed")] == 1

    # `bot.py jobs` lists it; /metrics counts it by kind; once the model is back, a retry answers it.
    queue = app.deps.jobs.queue
    listing = format_jobs(await queue.list_jobs(), await queue.counts())
    assert "question failed: 1" in listing and "deadline passed" in listing
    assert 'ringkas_jobs{kind="question",state="failed"} 1.0' in (await app.get("/metrics")).text
    openai_stub._failures.clear()
    [failed] = await queue.list_jobs(("failed",))
    assert await queue.retry(failed["id"])
    app.deps.jobs.worker.wake()
    await app.settle()
    told_then_answered = slack_stub.posted()[before:]
    assert len(told_then_answered) == 2 and "40 percent" in flat(told_then_answered[1])
    assert 'ringkas_jobs{kind="question",state="done"} 1.0' in (await app.get("/metrics")).text
