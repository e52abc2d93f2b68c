"""Answers stream into their thread through the Slack stand-in (start/append/stop), fall back to one post
when Slack refuses the stream, stay inert, and never storm Slack with calls."""

from __future__ import annotations

import json

from tests.slack_app import SlackApp, mention
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_ask import model, summarize_here

ANSWER = ("Bing shows AI answers for about 40 percent of US English searches, the article says; "
          "Google gave no comparable figure but says AI Overviews reach over a billion people a month.")


def streamed(stub: SlackStub) -> list[dict]:
    return list(stub.streams.values())


async def ask_in_thread(app: SlackApp, thread: str, text: str = "what share of searches?") -> None:
    assert await app.event(mention(f"<@UBOT> {text}", thread_ts=thread)) == 200
    await app.settle()


async def test_a_follow_up_answer_streams_into_the_thread(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model([ANSWER])
    thread = await summarize_here(slack_app, web)
    posted = len(slack_stub.posted())
    openai_stub.stream_chunk = 7
    await ask_in_thread(slack_app, thread)
    [start] = [c.args for c in slack_stub.calls_to("chat.startStream")]
    assert start["thread_ts"] == thread and start["channel"] == "C0001"
    assert start["recipient_user_id"] == "U0001" and start["recipient_team_id"] == "T0001"
    [stream] = streamed(slack_stub)
    assert stream["stopped"] and stream["text"] == ANSWER  # every word arrived, once, in order
    assert len(start["markdown_text"]) < len(ANSWER)  # the first words went out before the whole answer
    footer = json.dumps(stream["blocks"])
    assert "About:" in footer and "Search engines race to add AI answers" in footer
    assert len(slack_stub.posted()) == posted  # no second copy, no placeholder
    assert slack_stub.calls_to("chat.update") == []
    # The model was asked to stream.
    assert any(body.get("stream") for body in openai_stub.requests)


async def test_refused_stream_falls_back_to_one_post(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model([ANSWER])
    thread = await summarize_here(slack_app, web)
    posted = len(slack_stub.posted())
    slack_stub.refuse_streams = "not_allowed_token_type"
    await ask_in_thread(slack_app, thread)
    assert len(slack_stub.calls_to("chat.startStream")) == 1  # tried once, then no more stream calls
    assert slack_stub.calls_to("chat.appendStream") == [] and slack_stub.calls_to("chat.stopStream") == []
    [answer] = slack_stub.posted()[posted:]
    assert answer["thread_ts"] == thread and "40 percent" in json.dumps(answer["blocks"])


async def test_a_stream_that_breaks_midway_is_completed_once(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model([ANSWER * 4])
    thread = await summarize_here(slack_app, web)
    openai_stub.stream_chunk, openai_stub.stream_delay = 20, 0.05
    slack_stub.overrides["chat.appendStream"] = lambda args: {"ok": False, "error": "message_not_found"}
    await ask_in_thread(slack_app, thread)
    [update] = [c.args for c in slack_stub.calls_to("chat.update")]  # the whole answer, once
    assert update["ts"] == slack_stub.calls_to("chat.startStream")[0].response["ts"]
    assert "40 percent" in json.dumps(update["blocks"])
    assert len(slack_stub.calls_to("chat.appendStream")) == 1  # no retry storm after the refusal


async def test_streamed_text_is_inert_and_appends_are_throttled(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    hostile = " ".join(  # grounded enough to pass the answer checks, hostile in every line
        f"Ping <!channel> and @here, <@U0BAD> <https://evil.test|click>. Point {i}: Bing shows AI answers "
        "for about 40 percent of US English searches." for i in range(20)
    )
    openai_stub.responder = model([hostile])
    thread = await summarize_here(slack_app, web)
    openai_stub.stream_chunk = 3  # ~900 pieces from the model
    await ask_in_thread(slack_app, thread)
    [stream] = streamed(slack_stub)
    assert "<!" not in stream["text"] and "<@" not in stream["text"] and "<https" not in stream["text"]
    assert "@here" not in stream["text"] and "@\u2060here" in stream["text"]
    assert stream["text"].startswith("Ping &lt;!channel&gt;")
    assert len(slack_stub.calls_to("chat.appendStream")) <= 6  # throttled, not one call per piece


async def test_ask_streams_in_the_articles_thread_and_names_who_asked(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model([ANSWER])
    thread = await summarize_here(slack_app, web)
    await slack_app.command("what share of searches?", command="/ask", user_id="U0042")
    await slack_app.settle()
    [stream] = streamed(slack_stub)
    assert stream["thread_ts"] == thread and stream["text"] == ANSWER
    assert "<@U0042> asked" in json.dumps(stream["blocks"])
    assert slack_stub.calls_to("chat.startStream")[0].args["recipient_user_id"] == "U0042"


async def test_a_rerun_finds_the_stream_its_crashed_run_opened_before_recording_it(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    """The process died between Slack opening the stream and the ts being recorded: the rerun takes over
    the bot's message without metadata in that thread (not the summary, which carries its key)."""
    from datetime import timedelta

    from handlers.question_jobs import _earlier_stream, _Journal
    from ringkas.jobs import Job
    from ringkas.storage.base import utcnow

    thread = await summarize_here(slack_app, web)
    client = slack_app.runtime.app.client
    now = utcnow()
    job = Job(id=1, key="q-crashed", kind="question", payload={}, attempts=2,
              give_up_at=now + timedelta(minutes=5), created_at=now)
    assert await _earlier_stream(slack_app.deps, client, job) is None  # nothing journaled: a fresh start
    journal = _Journal(slack_app.deps, job, "C0001", thread)
    await journal.opening()  # recorded as attempted ...
    opened = await client.chat_startStream(channel="C0001", thread_ts=thread, markdown_text="Bing shows",
                                           recipient_team_id="T0001", recipient_user_id="U0001")
    # ... but the process died before `journal.opened(ts)`.
    assert await _earlier_stream(slack_app.deps, client, job) == opened["ts"]
    entry = await slack_app.deps.jobs.outbox.get("q-crashed:stream")
    assert entry is not None and entry.state == "sent" and entry.message_ts == opened["ts"]
