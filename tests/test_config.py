"""Settings: the operator contract (names, defaults, validation, .env precedence, no secrets in repr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringkas.config import DEFAULT_MODEL, Settings, parse_feed_list
from ringkas.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.openai_model == DEFAULT_MODEL
    assert s.max_input_tokens == 12_000
    assert s.summary_language == "auto"
    assert s.database_url == "sqlite:///data/ringkas.db"
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.port == 3000
    assert s.fetch_allow_hosts == ()
    assert s.digest_time == "08:00"
    assert not s.socket_mode


def test_values_are_parsed_and_normalised() -> None:
    s = Settings.from_env(
        {
            "OPENAI_MODEL": "llama3.1",
            "MAX_INPUT_TOKENS": "4000",
            "SUMMARY_LANGUAGE": "ID",
            "FETCH_ALLOW_HOSTS": " Wiki.Internal , 10.0.0.5,",
            "SLACK_API_URL": "http://127.0.0.1:9/api",
            "SLACK_APP_TOKEN": "xapp-1-abc",
            "DIGEST_TIME": "7:05",
            "DIGEST_TIMEZONE": "Asia/Jakarta",
        }
    )
    assert s.openai_model == "llama3.1"
    assert s.max_input_tokens == 4000
    assert s.summary_language == "id"
    assert s.fetch_allow_hosts == ("wiki.internal", "10.0.0.5")
    assert s.slack_api_url == "http://127.0.0.1:9/api/"
    assert s.socket_mode
    assert s.digest_time == "07:05"
    assert s.digest_timezone == "Asia/Jakarta"


@pytest.mark.parametrize(
    ("value", "code"),
    [("id", "id"), ("ID", "id"), ("id-ID", "id"), ("ind", "id"), ("Indonesian", "id"), ("in", "id"),
     ("pt-BR", "pt-br"), ("English", "en"), (" auto ", "auto")],
)
def test_summary_language_accepts_codes_and_names(value: str, code: str) -> None:
    assert Settings.from_env({"SUMMARY_LANGUAGE": value}).summary_language == code


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MAX_INPUT_TOKENS", "lots", "whole number"),
        ("MAX_INPUT_TOKENS", "10", "between"),
        ("SUMMARY_LANGUAGE", "Indonesian!", "language code"),
        ("SUMMARY_LANGUAGE", "qq", "I don't know the language 'qq'"),  # well-formed, but no language
        ("SUMMARY_LANGUAGE", "xx-yy", "I don't know the language"),
        ("DATABASE_URL", "data/ringkas.db", "SQLAlchemy URL"),
        ("OPENAI_BASE_URL", "localhost:11434", "http(s) URL"),
        ("SLACK_API_URL", "slack.com/api", "http(s) URL"),
        ("PORT", "70000", "between"),
        ("DIGEST_TIME", "25:00", "HH:MM"),
        ("DIGEST_TIMEZONE", "Mars/Olympus", "IANA time zone"),
        ("DIGEST_TIMEZONE", "localtime", "IANA time zone"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
    ],
)
def test_invalid_settings_fail_with_a_clear_message(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert name in info.value.user_message
    assert fragment in info.value.user_message


def test_digest_feeds_file_or_comma_list(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds.txt"
    feeds.write_text(
        "# AI news\nhttps://a.example/rss\n\nhttps://b.example/atom  # lab blog\n", encoding="utf-8"
    )
    assert parse_feed_list(str(feeds)) == ("https://a.example/rss", "https://b.example/atom")
    assert parse_feed_list("https://a.example/rss, https://b.example/atom") == (
        "https://a.example/rss",
        "https://b.example/atom",
    )


def test_repr_never_shows_secrets() -> None:
    s = Settings.from_env(
        {
            "OPENAI_API_KEY": "sk-very-secret-key",
            "SLACK_BOT_TOKEN": "xoxb-very-secret",
            "SLACK_SIGNING_SECRET": "signing-very-secret",
            "DATABASE_URL": "postgresql://ringkas:hunter2@db.internal/ringkas",
        }
    )
    shown = repr(s)
    for secret in ("sk-very-secret-key", "xoxb-very-secret", "signing-very-secret", "hunter2"):
        assert secret not in shown


def test_dotenv_is_read_and_real_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAX_INPUT_TOKENS=5000\nOPENAI_MODEL=from-dotenv\n", encoding="utf-8")
    script = (
        "from ringkas.config import Settings\n"
        "s = Settings.from_env()\n"
        "print(s.max_input_tokens, s.openai_model)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"MAX_INPUT_TOKENS", "OPENAI_MODEL"}}
    env["OPENAI_MODEL"] = "from-environment"
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["5000", "from-environment"]


def test_invalid_setting_stops_the_bot_at_start_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_", "DIGEST_"))}
    env["MAX_INPUT_TOKENS"] = "many"
    out = subprocess.run(
        [sys.executable, str(REPO / "bot.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == ["error: MAX_INPUT_TOKENS must be a whole number, got 'many'"]
