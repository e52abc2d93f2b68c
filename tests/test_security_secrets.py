"""Secrets never reach the terminal: bad settings are reported without their credentials, `digest
--dry-run` prints feed URLs without userinfo or token values, and plain-http Slack/model URLs to
another machine are refused at start (or, with the explicit opt-out, said loudly)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringkas.config import Settings, redact_url
from ringkas.errors import ConfigError
from ringkas.urls import without_credentials
from tests.test_digest_cli import bot_env, run_bot
from tests.test_digest_support import digest_responder, recent_feed

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Pa55w0rdZ"


def run(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DATABASE_"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "bot.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "database_url",
    [
        f"postgresql//bob:{SECRET}@db.internal/ringkas",  # "://" mistyped
        f"postgresql://bob:{SECRET}@db.internal:port/ringkas",  # bad port
        f"postgresq://bob:{SECRET}@db.internal/ringkas",  # unknown backend
        f"postgresql://bob:{SECRET}/x@127.0.0.1:1/ringkas",  # "/" in the password, nothing listening
        f"mysql://bob:{SECRET}@db.internal/ringkas",
    ],
)
def test_bad_database_url_errors_hide_the_password(database_url: str, tmp_path: Path) -> None:
    done = run({"DATABASE_URL": database_url}, "usage")
    assert done.returncode == 1
    assert done.stderr.startswith("error: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"postgresql://bob:{SECRET}@db/x", "postgresql://***@db/x"),
        (f"postgresql//bob:{SECRET}@db/x", "***@db/x"),
        (f"postgresql://bob:a/b@c{SECRET}@db/x", "postgresql://***@db/x"),
        ("sqlite:///data/ringkas.db", "sqlite:///data/ringkas.db"),
    ],
)
def test_redact_url(raw: str, shown: str) -> None:
    assert redact_url(raw) == shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"https://bob:{SECRET}@feeds.example.com/rss", "https://feeds.example.com/rss"),
        (f"https://bob:x/{SECRET}@feeds.example.com/rss", "https://feeds.example.com/rss"),
        (f"https://feeds.example.com/rss?token={SECRET}&n=5", "https://feeds.example.com/rss?token=***&n=5"),
        (f"https://feeds.example.com/rss?api_key={SECRET}", "https://feeds.example.com/rss?api_key=***"),
        ("https://medium.com/feed/@someone", "https://medium.com/feed/@someone"),
        ("https://example.com:8443/a:b/@c", "https://example.com:8443/a:b/@c"),
    ],
)
def test_without_credentials(raw: str, shown: str) -> None:
    assert without_credentials(raw) == shown


async def test_dry_run_never_prints_feed_credentials(web, openai_stub, slack_stub, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    openai_stub.responder = digest_responder
    feed = recent_feed(web, "/ai.xml", "AI Daily", ["Anthropic releases Claude 6"], description="Short.")
    port = web.url("/").split(":")[2].split("/")[0]
    secret_feeds = [
        f"http://reader:{SECRET}@127.0.0.1:{port}/private.xml",
        f"http://127.0.0.1:{port}/missing.xml?token={SECRET}",
    ]
    env = bot_env(openai_stub, slack_stub, sqlite_url, [feed, *secret_feeds], SUMMARY_LANGUAGE="en")
    code, out, err = await run_bot(env, "digest", "--dry-run")
    assert code == 0, err
    assert "unavailable: " in out  # the failing feeds are listed...
    assert f"http://127.0.0.1:{port}/private.xml" in out
    assert SECRET not in out and SECRET not in err  # ...without their credentials


@pytest.mark.parametrize("name", ["SLACK_API_URL", "OPENAI_BASE_URL"])
def test_plain_http_api_urls_are_refused_except_loopback(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: f"http://user:{SECRET}@proxy.corp.example:8080/api/"})
    message = caught.value.user_message
    assert name in message and "https" in message and "ALLOW_INSECURE_API_URLS" in message
    assert SECRET not in message
    for ok in ("http://127.0.0.1:9/api/", "http://localhost:9/", "http://[::1]:9/", "https://slack.example/api/"):
        Settings.from_env({name: ok})  # no error


def test_opt_out_is_said_loudly_at_start(tmp_path: Path) -> None:
    done = run(
        {
            "ALLOW_INSECURE_API_URLS": "true",
            "OPENAI_BASE_URL": f"http://u:{SECRET}@llm.corp.example/v1",
            "DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        },
        "usage",
    )
    assert done.returncode == 0, done.stderr
    assert "CLEAR TEXT" in done.stderr and "OPENAI_BASE_URL=http://***@llm.corp.example/v1" in done.stderr
    assert SECRET not in done.stderr
    refused = run({"SLACK_API_URL": "http://slack-proxy.corp.example/api/"}, "usage")
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0 and "SLACK_API_URL must use https://" in refused.stderr
