"""A newcomer's first minute: the README's commands, CI running exactly them, the manifest, `.env.example`,
and what `python bot.py` says before any setting exists."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ringkas.config import Settings
from ringkas.startup import missing_for_slack, started_message

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _start_here_commands() -> list[str]:
    section = README.split("## Start here", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_readme_has_the_two_setup_commands_install_then_test() -> None:
    install, test = _start_here_commands()
    assert install.startswith("python3 -m venv .venv && .venv/bin/pip install -r requirements.lock")
    assert install.endswith(".venv/bin/python bot.py")
    assert "[test]" not in install and "pytest" not in install and "ruff" not in install
    assert test.startswith(".venv/bin/pip install -r requirements-test.lock")
    assert test.endswith(".venv/bin/python -m pytest")


def test_ci_types_the_readme_commands_as_written_and_nothing_else_installs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in _start_here_commands():
        assert command in ci, command
    installs = [line for line in ci.splitlines() if re.search(r"\bpip\b.*\binstall\b", line)]
    assert all(any(cmd in line for cmd in _start_here_commands()) for line in installs), installs
    assert "--upgrade pip" not in ci and "upgrade pip" not in ci


def test_lock_files_pin_exact_versions_and_carry_the_undeclared_extra() -> None:
    for name in ("requirements.lock", "requirements-test.lock"):
        lines = [
            line.strip() for line in (ROOT / name).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#") and not line.startswith("-")
        ]
        assert lines, name
        assert all("==" in line for line in lines), [line for line in lines if "==" not in line]
    runtime = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    assert re.search(r"^lxml-html-clean==", runtime, re.MULTILINE)
    assert not re.search(r"^(pytest|ruff)==", runtime, re.MULTILINE)  # test tools stay out of production
    tests = (ROOT / "requirements-test.lock").read_text(encoding="utf-8")
    assert re.search(r"^pytest==", tests, re.MULTILINE) and re.search(r"^ruff==", tests, re.MULTILINE)


def test_manifest_json_is_the_readmes_copy() -> None:
    manifest = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    section = README.split("## Create the Slack app", 1)[1]
    readme_copy = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    assert manifest == readme_copy
    assert manifest["settings"]["socket_mode_enabled"] is True  # the shortest path needs no public URL


def _setting_names() -> set[str]:
    source = (ROOT / "ringkas" / "config.py").read_text(encoding="utf-8")
    return set(re.findall(r'env,\s*"([A-Z][A-Z0-9_]+)"', source))


def test_every_setting_is_in_env_example_and_the_readme_table() -> None:
    names = _setting_names() | {"TIKTOKEN_CACHE_DIR"}
    assert {"SLACK_BOT_TOKEN", "OPENAI_API_KEY", "DIGEST_TIMEZONE"} <= names
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    table = README.split("## Settings", 1)[1]
    missing_example = sorted(n for n in names if not re.search(rf"^#?{n}=", example, re.MULTILINE))
    missing_readme = sorted(n for n in names if f"| `{n}` |" not in table)
    assert not missing_example and not missing_readme, (missing_example, missing_readme)


def test_env_example_copied_as_is_sets_nothing() -> None:
    """`cp .env.example .env` must not send articles anywhere with a placeholder key."""
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    active = [line for line in example.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert active == []


def test_env_example_defaults_agree_with_the_readme() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    table = README.split("## Settings", 1)[1]
    for name, value in re.findall(r"^#([A-Z][A-Z0-9_]+)=(\S+)$", example, re.MULTILINE):
        row = re.search(rf"^\| `{name}` \| ([^|]+) \|", table, re.MULTILINE)
        if row is None or not row.group(1).strip().startswith("`"):
            continue  # no literal default in the table (a secret, or "built-in list")
        default = row.group(1).strip().strip("`")
        if name not in {"FETCH_ALLOW_HOSTS", "DIGEST_FEEDS", "TIKTOKEN_CACHE_DIR"}:
            assert value == default, (name, value, default)


def _bare_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DATABASE_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'never.db'}"
    return env


def test_bot_with_no_settings_prints_a_guide_not_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bot.py")], cwd=tmp_path, env=_bare_env(tmp_path),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    for needed in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_API_KEY",
                   "OPENAI_BASE_URL", "bot.py extract", "bot.py summarize", ".env.example"):
        assert needed in done.stderr, needed
    assert not (tmp_path / "never.db").exists()


def test_env_example_placeholders_count_as_missing() -> None:
    settings = Settings.from_env(
        {"SLACK_BOT_TOKEN": "xoxb-...", "SLACK_APP_TOKEN": "xapp-...", "OPENAI_API_KEY": "sk-..."},
        dotenv=False,
    )
    assert [m.name for m in missing_for_slack(settings)] == [
        "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "  or SLACK_SIGNING_SECRET", "OPENAI_API_KEY"
    ]
    complete = Settings.from_env(
        {"SLACK_BOT_TOKEN": "xoxb-1-2", "SLACK_SIGNING_SECRET": "s3cret", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"},
        dotenv=False,
    )
    assert missing_for_slack(complete) == []


def test_started_message_says_mode_port_and_request_url() -> None:
    http = Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "PORT": "3100"},
                             dotenv=False)
    text = started_message(http, "0.0.0.0", 3100)
    assert "HTTP mode" in text and "3100" in text and "https://YOUR-PUBLIC-HOST/slack/events" in text
    socket = Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}, dotenv=False)
    assert "Socket Mode" in started_message(socket, "", 0)


@pytest.mark.usefixtures("monkeypatch")
def test_bolt_token_unused_warning_is_gone(monkeypatch, caplog) -> None:
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    import bot

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    with caplog.at_level(logging.WARNING):
        with bot._token_from_client_only():
            AsyncApp(client=AsyncWebClient(token="xoxb-from-env"), signing_secret="s")
        assert not [r for r in caplog.records if "will be unused" in r.getMessage()]
        AsyncApp(client=AsyncWebClient(token="xoxb-from-env"), signing_secret="s")  # the filter is scoped
    assert [r for r in caplog.records if "will be unused" in r.getMessage()]
