"""Build Slack requests exactly as Slack sends them: signed bodies for Events API and slash commands."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode


def signature(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str, body: str, *, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature(secret, ts, body),
    }


def event_body(event: dict[str, Any], *, team_id: str = "T0001", event_id: str = "Ev0001") -> str:
    return json.dumps(
        {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "api_app_id": "A0001",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": team_id, "user_id": "UBOT", "is_bot": True}],
        }
    )


def command_body(
    command: str,
    text: str,
    *,
    response_url: str,
    channel_id: str = "C0001",
    user_id: str = "U0001",
    team_id: str = "T0001",
    trigger_id: str = "1.2.3",
) -> str:
    """A slash-command body; real trigger ids look like `13345224609.738474920.8088930838d88f008e0`."""
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "team_domain": "stub",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": "someone",
            "command": command,
            "text": text,
            "api_app_id": "A0001",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


def interaction_body(payload: dict[str, Any]) -> str:
    """An interactivity request (shortcuts, buttons, modals): form-encoded `payload=<json>`."""
    return urlencode({"payload": json.dumps(payload)})
