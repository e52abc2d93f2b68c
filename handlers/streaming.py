"""An answer streamed into its thread while the model writes it (`chat.startStream`, `appendStream`,
`stopStream`), with a single post as the fallback where Slack will not open a stream.

Nothing is posted before the first words exist (no placeholder). Appends are throttled (at most one every
`INTERVAL` seconds, each carrying everything new), so a long answer costs a handful of calls, never a
chat.update storm. The text is escaped like every other model text; the last `HOLD` characters wait for
the next piece, so a broadcast word cut in two (`@chan` + `nel`) is still defused as a whole.

Durability (handlers/question_jobs.py): a `journal` records the stream before it is opened and its ts once
Slack has it, so a job run again after a crash finds the half-written message and replaces it once with
the whole answer instead of streaming a second one; the finished stream carries the answer's outbox key as
message metadata, like every other bot post.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError

from handlers.render import escape

log = logging.getLogger("ringkas.slack.streaming")

INTERVAL = 0.5  # seconds between appends to one stream
HOLD = 12  # trailing characters kept back until more text arrives (longer than "@everyone")
STREAM_LIMIT = 11_000  # Slack takes at most 12,000 characters of markdown per call; beyond it: one post


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error")) if exc.response is not None else "unknown"


class StreamJournal(Protocol):
    async def opening(self) -> None: ...  # about to call chat.startStream
    async def opened(self, ts: str) -> None: ...  # Slack opened the stream as message `ts`


class AnswerStream:
    """One answer being streamed into `thread_ts`. `update(text)` with the answer so far, then `stop()`."""

    def __init__(self, client: Any, *, channel_id: str, thread_ts: str, team_id: str | None,
                 user_id: str | None, journal: StreamJournal | None = None) -> None:
        self.client = client
        self.journal = journal
        self.channel_id = channel_id
        self.thread_ts = thread_ts
        self.team_id = team_id
        self.user_id = user_id
        self.ts: str | None = None  # the streamed message, once started
        self.sent = ""  # escaped text already in Slack
        self.refused: str | None = None  # Slack's error when it would not open (or keep) the stream
        self.first_shown: float | None = None  # perf_counter when the first words reached Slack (benchmarks)
        self._last = 0.0
        self._lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        return self.ts is not None and self.refused is None

    async def update(self, text: str) -> None:
        """The answer so far (model text, growing). Sends what is new, at most every INTERVAL seconds."""
        if self.refused is not None or self._lock.locked():
            return  # refused, or a call is in flight: its successor will carry this text too
        if self.ts is not None and time.monotonic() - self._last < INTERVAL:
            return
        async with self._lock:
            await self._send(self._ready(text))

    def _ready(self, text: str) -> str:
        safe = escape(text)
        if len(safe) > STREAM_LIMIT:
            return self.sent
        ready = safe[: max(0, len(safe) - HOLD)]
        amp = ready.rfind("&")
        if amp != -1 and ";" not in ready[amp:]:
            ready = ready[:amp]  # never split an &amp; entity
        return ready

    async def _send(self, ready: str) -> None:
        if len(ready) <= len(self.sent) or not ready.strip():
            return
        delta = ready[len(self.sent):]
        try:
            if self.ts is None:
                if self.journal is not None:
                    await self.journal.opening()
                response = await self.client.chat_startStream(
                    channel=self.channel_id, thread_ts=self.thread_ts, markdown_text=delta,
                    recipient_team_id=self.team_id, recipient_user_id=self.user_id,
                )
                self.ts = str(response["ts"])
                self.first_shown = time.perf_counter()
                if self.journal is not None:
                    await self.journal.opened(self.ts)
            else:
                await self.client.chat_appendStream(channel=self.channel_id, ts=self.ts, markdown_text=delta)
        except SlackApiError as exc:
            self.refused = _error(exc)
            log.info("Slack refused the stream; the answer is posted whole",
                     extra={"channel": self.channel_id, "error": self.refused})
            return
        except Exception as exc:  # Slack (or the journal's database) unreachable: never break the answer
            self.refused = type(exc).__name__
            log.warning("could not stream the answer; it is posted whole",
                        extra={"channel": self.channel_id, "error": self.refused})
            return
        self.sent = ready
        self._last = time.monotonic()

    async def stop(self, final_text: str, blocks: list[dict[str, Any]],
                   metadata: dict[str, Any] | None = None) -> bool:
        """Finish the streamed message with the rest of `final_text` and `blocks` under it. False when
        the answer was never streamed (or the stream broke): the caller posts it as one message."""
        async with self._lock:
            if self.ts is None or self.refused is not None:
                return False
            safe = escape(final_text)
            if not safe.startswith(self.sent) or len(safe) > STREAM_LIMIT:
                return False  # the final answer differs from what was shown (a repaired reply)
            try:
                await self.client.chat_stopStream(channel=self.channel_id, ts=self.ts,
                                                  markdown_text=safe[len(self.sent):] or None, blocks=blocks,
                                                  metadata=metadata)
            except Exception as exc:
                self.refused = _error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
                log.warning("could not finish the streamed answer", extra={"channel": self.channel_id,
                                                                           "error": self.refused})
                return False
            self.sent = safe
            return True
