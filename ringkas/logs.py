"""Structured logging: one JSON object per line (or plain text), with secrets scrubbed.

Pass context with `extra={...}`; every extra field becomes a key of the JSON line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from ringkas.config import Settings

# Slack tokens (xoxb/xoxp/xoxe/…, xapp), OpenAI-style keys, bearer and basic credentials, api-key headers and
# key/token query parameters, passwords inside URLs.
_SECRET_PATTERNS = [
    (re.compile(r"xox[a-z]-[A-Za-z0-9-]+"), "xox-***"),
    (re.compile(r"xapp-[A-Za-z0-9-]+"), "xapp-***"),
    (re.compile(r"sk-[A-Za-z0-9_-]{8,}"), "sk-***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?basic\s+)[A-Za-z0-9+/=]{8,}"), r"\1***"),
    (re.compile(r"(?i)([?&](?:api[-_]?key|access_token|token|key|sig|signature)=)[^&\s\"'#]+"), r"\1***"),
    (re.compile(r"(?i)((?<![?&])\bapi-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"), r"\1***"),
    (re.compile(r"(://[^:/@\s]+):[^@/\s]+@"), r"\1:***@"),
]
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Characters that some log readers take as line breaks although JSON leaves them raw (NEL, LS, PS),
# and C0 controls for the text format: a hostile URL or page title must not forge a log line.
_JSON_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_TEXT_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
            quoted = json.dumps(secret, ensure_ascii=False)[1:-1]  # as it appears inside a JSON string
            if quoted != secret:
                text = text.replace(quoted, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _one_line(value: object) -> str:
    """Text-format values on one physical line: control characters shown as escapes."""
    return _TEXT_CONTROLS.sub(lambda m: repr(m.group(0))[1:-1] if m.group(0) != "\n" else "\\n", str(value))


class _Formatter(logging.Formatter):
    def __init__(self, *, as_json: bool, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.as_json = as_json
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}
        message = record.getMessage()
        if record.exc_info:
            extras["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            payload = {
                **extras,  # first, so context can never overwrite the fixed fields below
                "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": message,
            }
            line = json.dumps(payload, ensure_ascii=False, default=str)
            for char, escaped in _JSON_LINE_BREAKS.items():
                line = line.replace(char, escaped)
        else:
            tail = " ".join(f"{_one_line(k)}={_one_line(v)}" for k, v in extras.items() if k != "exc")
            line = f"{record.levelname:<7} {record.name}: {_one_line(message)}" + (f" {tail}" if tail else "")
            if "exc" in extras:
                # Tracebacks keep their lines, each indented, so none can pass for a log line of its own.
                trace = _TEXT_CONTROLS.sub(lambda m: "\n" if m.group(0) == "\n" else " ", str(extras["exc"]))
                line += "\n" + "\n".join("    | " + part for part in trace.split("\n"))
        return scrub(line, self.secrets)


def configure_logging(settings: Settings, *, quiet: bool = False) -> None:
    """Root logging to stderr; `quiet` (terminal commands) shows warnings and above only."""
    secrets = tuple(
        s
        for s in (
            settings.openai_api_key,
            settings.slack_bot_token,
            settings.slack_app_token,
            settings.slack_signing_secret,
            _database_password(settings.database_url),
        )
        if s
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json=settings.log_format == "json", secrets=secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else settings.log_level)
    for noisy in ("httpx", "httpcore", "openai", "trafilatura", "htmldate", "courlan", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _database_password(url: str) -> str | None:
    """The password in DATABASE_URL (as written and decoded), scrubbed wherever it shows up."""
    try:
        split = urlsplit(url)
        password = split.password
    except ValueError:
        return None
    if not password:
        return None
    password = unquote(password)
    # `postgres:postgres@…`: a password that is also the user name or host would blank out every
    # mention of them; the URL pattern still hides it inside URLs.
    visible = f"{split.scheme} {split.username or ''} {split.hostname or ''} {split.path}"
    return None if password.lower() in visible.lower() else password
