"""Work in progress shown the way Slack itself shows it, never as a placeholder message.

In a thread the app may set a status on (`assistant.threads.setStatus`: app_mention threads, assistant
threads) the status line says "is reading …" under the thread; everywhere else (or when Slack refuses the
status) an 👀 reaction on the person's message says the same and is replaced by ✅ or ⚠️ when done.
A slash command has no message to react to: its progress is a private note to the person who asked.

Nothing here is posted when the work finishes quickly (a cached summary appears at once).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger("ringkas.slack.progress")

WORKING = "eyes"
DONE = "white_check_mark"
FAILED = "warning"


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error")) if exc.response is not None else "unknown"


class Progress:
    """Progress of one person's request (one message, however many links it holds)."""

    def __init__(
        self, client: Any, *, channel_id: str, message_ts: str | None, thread_ts: str | None,
        status: str, try_status: bool, response_url: str | None = None,
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        self.message_ts = message_ts  # the person's message (None: a slash command)
        self.thread_ts = thread_ts
        self.status = status
        self.try_status = try_status and bool(thread_ts)
        self.response_url = response_url
        self.shown: str | None = None  # "status" | "reaction" | "note"

    async def start(self) -> None:
        if self.try_status and await self._set_status(self.status):
            self.shown = "status"
            return
        if self.message_ts and await self._react("reactions_add", WORKING):
            self.shown = "reaction"
            return
        if self.response_url and await self._note(f":hourglass_flowing_sand: {self.status}"):
            self.shown = "note"

    async def finish(self, ok: bool) -> None:
        """The work is done (its result was posted): clear the status, or swap 👀 for ✅ / ⚠️."""
        if self.shown == "status":
            await self._set_status("")  # posting the reply clears it too; this covers a failed post
        elif self.shown == "reaction":
            await self._react("reactions_remove", WORKING)
            await self._react("reactions_add", DONE if ok else FAILED)

    async def withdraw(self) -> None:
        """The job goes back to the queue (an outage): take the marker down; the run that finishes the
        work shows its own progress if it is slow, and nothing is left behind if it is quick."""
        if self.shown == "status":
            await self._set_status("")
        elif self.shown == "reaction":
            await self._react("reactions_remove", WORKING)
        self.shown = None

    async def _set_status(self, text: str) -> bool:
        assert self.thread_ts is not None
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=self.channel_id, thread_ts=self.thread_ts, status=text
            )
            return True
        except SlackApiError as exc:
            log.info("thread status refused; using a reaction", extra={"error": _error(exc)})
        except Exception:
            log.warning("could not set the thread status", exc_info=True)
        return False

    async def _react(self, method: str, name: str) -> bool:
        try:
            await getattr(self.client, method)(channel=self.channel_id, timestamp=self.message_ts, name=name)
            return True
        except SlackApiError as exc:
            error = _error(exc)
            # already there (a redelivery) or already gone: the reaction says what it should
            if error in {"already_reacted", "no_reaction"}:
                return True
            log.info("reaction refused", extra={"method": method, "error": error})
        except Exception:
            log.warning("could not change a progress reaction", exc_info=True)
        return False

    async def _note(self, text: str) -> bool:
        assert self.response_url
        try:
            webhook = AsyncWebhookClient(self.response_url, timeout=30)
            response = await webhook.send(text=text, response_type="ephemeral", replace_original=False)
            return response.status_code == 200
        except Exception:
            log.warning("could not send the progress note", exc_info=True)
            return False
