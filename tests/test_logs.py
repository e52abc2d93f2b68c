"""Structured logs: JSON lines with context, fixed fields kept, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ringkas.config import Settings
from ringkas.logs import configure_logging, scrub


@pytest.fixture
def json_logs():
    settings = Settings.from_env(
        {"OPENAI_API_KEY": "sk-live-abcdefghijkl", "SLACK_BOT_TOKEN": "xoxb-1-secret", "LOG_FORMAT": "json"}
    )
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(settings)
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    root.handlers[:], root.level = saved


def test_json_line_has_context_and_fixed_fields(json_logs) -> None:
    logging.getLogger("ringkas.test").info("summary posted", extra={"channel": "C1", "ts": "spoofed"})
    (line,) = json_logs()
    assert line["msg"] == "summary posted"
    assert line["logger"] == "ringkas.test"
    assert line["level"] == "info"
    assert line["channel"] == "C1"
    assert line["ts"] != "spoofed"


def test_secrets_never_reach_the_log(json_logs) -> None:
    log = logging.getLogger("ringkas.test")
    log.warning("calling with sk-live-abcdefghijkl and xoxb-1-secret", extra={"url": "postgresql://u:pw@h/db"})
    try:
        raise RuntimeError("Authorization: Bearer sk-live-abcdefghijkl")
    except RuntimeError:
        log.exception("failed")
    text = json.dumps(json_logs())
    for secret in ("sk-live-abcdefghijkl", "xoxb-1-secret", ":pw@"):
        assert secret not in text


def test_scrub_patterns() -> None:
    assert scrub("token xoxb-123-abc and xapp-1-A-2") == "token xox-*** and xapp-***"
    assert scrub("postgresql://ringkas:hunter2@db/x") == "postgresql://ringkas:***@db/x"
    assert scrub("my own secret value", ("secret value",)) == "my own ***"
