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

if TYPE_CHECKING:
    from ringkas.config import Settings

# Slack tokens, OpenAI-style keys, bearer headers, passwords inside URLs.
_SECRET_PATTERNS = [
    (re.compile(r"xox[abposr]-[A-Za-z0-9-]+"), "xox-***"),
    (re.compile(r"xapp-[A-Za-z0-9-]+"), "xapp-***"),
    (re.compile(r"sk-[A-Za-z0-9_-]{8,}"), "sk-***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"(://[^:/@\s]+):[^@/\s]+@"), r"\1:***@"),
]
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


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
        else:
            tail = " ".join(f"{k}={v}" for k, v in extras.items() if k != "exc")
            line = f"{record.levelname:<7} {record.name}: {message}" + (f" {tail}" if tail else "")
            if "exc" in extras:
                line += "\n" + str(extras["exc"])
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
