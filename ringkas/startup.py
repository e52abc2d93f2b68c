"""What a newcomer sees when `python bot.py` starts: a guide to the missing settings, or where Slack should
send its requests. Plain text; no Slack imports."""

from __future__ import annotations

from dataclasses import dataclass

from ringkas.config import Settings

# Values `.env.example` shows as examples: copying them verbatim is the same as not setting them.
_PLACEHOLDERS = frozenset({"sk-...", "xoxb-...", "xapp-...", "sk-…", "xoxb-…", "xapp-…"})


@dataclass(frozen=True)
class Missing:
    name: str
    how: str


def _set(value: str | None) -> bool:
    return bool(value) and value.strip() not in _PLACEHOLDERS  # type: ignore[union-attr]


def missing_for_slack(settings: Settings) -> list[Missing]:
    """Settings the Slack app cannot start without, each with where to get it."""
    missing: list[Missing] = []
    if not _set(settings.slack_bot_token):
        missing.append(Missing(
            "SLACK_BOT_TOKEN",
            "Bot User OAuth Token (xoxb-…): https://api.slack.com/apps → your app → OAuth & Permissions "
            "(create the app from manifest.json first)",
        ))
    if not _set(settings.slack_app_token) and not _set(settings.slack_signing_secret):
        missing.append(Missing(
            "SLACK_APP_TOKEN",
            "for Socket Mode, no public URL needed (xapp-…): Basic Information → App-Level Tokens, "
            "scope connections:write",
        ))
        missing.append(Missing(
            "  or SLACK_SIGNING_SECRET",
            "for HTTP mode behind a public HTTPS URL: Basic Information → Signing Secret",
        ))
    if not _set(settings.openai_api_key) and not settings.openai_base_url:
        missing.append(Missing(
            "OPENAI_API_KEY",
            "a key from https://platform.openai.com/api-keys, or instead OPENAI_BASE_URL of a local "
            "OpenAI-compatible server (Ollama: http://localhost:11434/v1)",
        ))
    return missing


def setup_guide(missing: list[Missing]) -> str:
    width = max(len(m.name) for m in missing)
    rows = "\n".join(f"  {m.name.ljust(width)}  {m.how}" for m in missing)
    return (
        "Ringkas needs a few settings before it can join Slack. Missing:\n"
        f"{rows}\n\n"
        "Put them in .env (cp .env.example .env, then edit) or in the environment; README → "
        "\"Create the Slack app\" walks through it.\n\n"
        "Try it without Slack meanwhile:\n"
        "  .venv/bin/python bot.py extract URL|FILE      the text the model would read (no model needed)\n"
        "  .venv/bin/python bot.py summarize URL|FILE    a summary (needs OPENAI_API_KEY or OPENAI_BASE_URL)"
        "\n"
        "  .venv/bin/python bot.py --help                every command\n"
    )


def started_message(settings: Settings, host: str, port: int) -> str:
    """The first log line of a running app: the mode, and what to paste into Slack."""
    if settings.socket_mode:
        return ("Ringkas is running in Socket Mode: connected out to Slack, no public URL needed. "
                "Invite the bot to a channel (/invite @Ringkas) and share a link.")
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    return (f"Ringkas is running in HTTP mode on port {port} (http://{shown}:{port}/slack/events, "
            f"health: /healthz). Request URL to paste into Slack (Event Subscriptions, Interactivity, "
            f"slash commands): https://YOUR-PUBLIC-HOST/slack/events, forwarded to this port by your "
            f"HTTPS proxy.")
