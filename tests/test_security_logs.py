"""Log injection and secrets: hostile text cannot forge log lines; secrets never reach a log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from ringkas.config import Settings
from ringkas.logs import configure_logging, scrub

FORGED = "https://news.example/a\nINFO    ringkas.auth: admin logged in\r\u2028{\"level\": \"info\"}"


@pytest.fixture
def make_logs() -> Iterator[Callable[..., Callable[[], str]]]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def build(**env: str) -> Callable[[], str]:
        configure_logging(Settings.from_env(env))
        buffer = io.StringIO()
        root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
        return buffer.getvalue

    yield build
    root.handlers[:], root.level = saved


def test_text_logs_keep_hostile_values_on_one_line(make_logs) -> None:
    output = make_logs(LOG_FORMAT="text")
    log = logging.getLogger("ringkas.test")
    log.info("fetch failed for %s", FORGED, extra={"url": FORGED})
    lines = output().splitlines()
    assert len(lines) == 1
    assert "admin logged in" in lines[0] and "\\n" in lines[0]
    try:
        raise ValueError(FORGED)
    except ValueError:
        log.exception("crashed")
    trace = output().splitlines()[1:]
    assert trace[0].startswith("INFO") is False and all(line.startswith("    | ") for line in trace[1:])
    assert not any(line.startswith("INFO") for line in trace[1:])


def test_json_logs_escape_every_line_break(make_logs) -> None:
    output = make_logs(LOG_FORMAT="json")
    logging.getLogger("ringkas.test").warning("bad link", extra={"url": FORGED + "\x85"})
    lines = output().splitlines()  # str.splitlines also breaks at U+2028, U+2029 and NEL
    assert len(lines) == 1
    assert json.loads(lines[0])["url"] == FORGED + "\x85"


def test_secrets_are_scrubbed_in_every_spelling(make_logs) -> None:
    output = make_logs(
        LOG_FORMAT="json",
        OPENAI_API_KEY='azure"key\\with-quote-0123',
        SLACK_BOT_TOKEN="xoxb-1-secret",
        DATABASE_URL="postgresql://ringkas:S3cr%40t-pass@db.internal:5432/ringkas",
    )
    log = logging.getLogger("ringkas.test")
    log.error("model said", extra={"body": 'key azure"key\\with-quote-0123 refused'})
    log.error("db said: password S3cr@t-pass rejected for user ringkas")
    log.error("refresh token xoxe.xoxp-1-abc and xoxe-1-abcdef, https://x.example/v1?api-key=zzz999&a=1")
    text = output()
    for leaked in ("azure", "with-quote-0123", "S3cr@t-pass", "xoxe-1-abcdef", "zzz999"):
        assert leaked not in text
    assert "user ringkas" in text and "&a=1" in text


def test_a_password_equal_to_the_user_name_does_not_blank_out_words(make_logs) -> None:
    output = make_logs(LOG_FORMAT="text", DATABASE_URL="postgresql://postgres:postgres@127.0.0.1:5432/test")
    logging.getLogger("ringkas.test").info("using postgresql at postgresql://postgres:postgres@127.0.0.1/test")
    text = output()
    assert "using postgresql at postgresql://postgres:***@127.0.0.1/test" in text


def test_scrub_keeps_ordinary_text() -> None:
    assert scrub("basic questions about keys") == "basic questions about keys"
    assert scrub("Authorization: Basic dXNlcjpwYXNzd29yZA==") == "Authorization: Basic ***"
