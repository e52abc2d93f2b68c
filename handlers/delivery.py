"""Outbox entries to Slack: the `Sender` the job layer uses (ringkas.jobs.outbox).

Every bot post carries Slack message metadata with its outbox key, so after a crash between posting and
recording, the retry looks the key up (conversations.replies in a thread, conversations.history at top
level) and finds the message instead of posting it twice. Updates, deletes and reaction removals are
idempotent by nature. A response_url post (a slash command where the bot may not post) cannot be looked
up: it is the one write that could, after a crash at the wrong instant, arrive twice.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.webhook.async_client import AsyncWebhookClient

from handlers.render import Message
from ringkas.jobs.outbox import OutboxEntry, SendLater, SendRefused

log = logging.getLogger("ringkas.slack.delivery")

METADATA_EVENT = "ringkas_reply"
# Slack errors about the message itself (its blocks or size): the same words as plain text get through.
CONTENT_REFUSED = frozenset({
    "invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long", "too_many_blocks",
    "invalid_attachments", "invalid_arguments",
})
# Slack errors meaning "the bot cannot post here", e.g. /summarize in a channel the bot is not in.
CANNOT_POST = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action"})
TRANSIENT = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                       "request_timeout",
                       "team_added_to_org"})
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


def message_payload(message: Message, **extra: Any) -> dict[str, Any]:
    """What an outbox entry stores for a message: Slack's arguments, JSON-ready."""
    return {**message.as_kwargs(), **extra}


def _plain(payload: dict[str, Any]) -> dict[str, Any]:
    # Deferred import: summaries imports this module.
    from handlers.summaries import plain_version

    plain = plain_version(Message(text=payload.get("text", ""), blocks=payload.get("blocks") or []))
    return {**payload, **plain.as_kwargs()}


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") if exc.response is not None else "unknown")


def _retry_after(exc: SlackApiError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value if isinstance(value, str) else value[0]))
            except (TypeError, ValueError):
                return None
    return None


def classify(exc: BaseException) -> Exception:
    """A Slack call's failure as SendLater (wait and retry) or SendRefused (give up)."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200) or 200
        error = _error(exc)
        if status == 429 or error == "ratelimited":
            return SendLater("ratelimited", _retry_after(exc))
        if status >= 500 or error in TRANSIENT:
            return SendLater(f"slack {status} {error}")
        return SendRefused(error)
    if isinstance(exc, (aiohttp.ClientError, SlackRequestError, TimeoutError, OSError)):
        return SendLater(f"slack unreachable: {type(exc).__name__}")
    return SendRefused(f"{type(exc).__name__}")


class SlackSender:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def send(self, entry: OutboxEntry) -> str | None:
        try:
            return await self._send(entry)
        except (SendLater, SendRefused):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def _send(self, entry: OutboxEntry) -> str | None:
        if entry.action == "post":
            return await self._post(entry)
        if entry.action == "update":
            return await self._update(entry)
        if entry.action == "delete":
            try:
                await self.client.chat_delete(channel=entry.channel_id, ts=entry.target_ts)
            except SlackApiError as exc:
                if _error(exc) not in GONE:
                    raise
            return entry.target_ts
        if entry.action == "unreact":
            try:
                await self.client.reactions_remove(channel=entry.channel_id, timestamp=entry.target_ts,
                                                   name=entry.payload["name"])
            except SlackApiError as exc:
                if _error(exc) not in {"no_reaction", *GONE}:
                    raise
            return entry.target_ts
        if entry.action == "respond":
            await self._respond(entry.payload)
            return None
        raise SendRefused(f"unknown outbox action {entry.action}")

    async def _post(self, entry: OutboxEntry) -> str | None:
        if entry.attempts > 1:
            found = await self.find(entry)
            if found is not None:
                log.info("an earlier attempt had posted it",
                         extra={"outbox": entry.id, "channel": entry.channel_id})
                return found
        payload = {k: v for k, v in entry.payload.items() if k not in {"response_url"}}
        kwargs: dict[str, Any] = {"channel": entry.channel_id, "unfurl_links": False, "unfurl_media": False,
                                  "metadata": {"event_type": METADATA_EVENT,
                                               "event_payload": {"key": entry.key}}}
        if entry.thread_ts:
            kwargs["thread_ts"] = entry.thread_ts
        try:
            try:
                response = await self.client.chat_postMessage(**kwargs, **payload)
            except SlackApiError as exc:
                if _error(exc) not in CONTENT_REFUSED:
                    raise
                log.warning("Slack refused the message; sending it as plain text",
                            extra={"channel": entry.channel_id, "error": _error(exc)})
                response = await self.client.chat_postMessage(**kwargs, **_plain(payload))
        except SlackApiError as exc:
            response_url = entry.payload.get("response_url")
            if _error(exc) in CANNOT_POST and response_url:
                # The bot may not post here (a slash command elsewhere): answer through the command.
                await self._respond({"url": response_url, "visible": bool(entry.payload.get("visible", True)),
                                     **{k: v for k, v in payload.items() if k != "visible"}})
                return None
            raise
        return str(response["ts"])

    async def _update(self, entry: OutboxEntry) -> str | None:
        payload = {k: v for k, v in entry.payload.items() if k not in {"response_url", "visible"}}
        try:
            try:
                await self.client.chat_update(channel=entry.channel_id, ts=entry.target_ts, **payload)
            except SlackApiError as exc:
                if _error(exc) not in CONTENT_REFUSED:
                    raise
                await self.client.chat_update(channel=entry.channel_id, ts=entry.target_ts, **_plain(payload))
            return entry.target_ts
        except SlackApiError as exc:
            if _error(exc) not in GONE:
                raise
        # The message to edit was deleted (or is too old): post the content anew.
        log.warning("chat.update failed, posting anew", extra={"channel": entry.channel_id})
        return await self._post(entry)

    async def _respond(self, payload: dict[str, Any]) -> None:
        webhook = AsyncWebhookClient(payload["url"], timeout=30)
        message = {k: payload[k] for k in ("text", "blocks") if k in payload}
        for attempt in ("as is", "plain"):
            response = await webhook.send(
                response_type="in_channel" if payload.get("visible", True) else "ephemeral",
                replace_original=False, unfurl_links=False, unfurl_media=False, **message,
            )
            if response.status_code == 200:
                return
            body = (response.body or "").strip()[:100]
            if response.status_code == 429 or response.status_code >= 500:
                raise SendLater(f"response_url {response.status_code}")
            if body in CONTENT_REFUSED and attempt == "as is":
                message = {k: v for k, v in _plain(message).items() if k in ("text", "blocks")}
                continue
            raise SendRefused(f"response_url {response.status_code} {body}")

    async def find(self, entry: OutboxEntry) -> str | None:
        """The ts of a message that carries this entry's key, if an earlier attempt posted it."""
        return await find_keyed(self.client, entry.channel_id, entry.thread_ts, entry.key,
                                since=entry.created_at.timestamp() - 60)


async def find_keyed(
    client: Any, channel_id: str, thread_ts: str | None, key: str, *, since: float
) -> str | None:
    """The ts of a bot message carrying `key` in its metadata: in the thread, or top level since `since`."""
    try:
        if thread_ts:
            response = await client.conversations_replies(
                channel=channel_id, ts=thread_ts, include_all_metadata=True, limit=200)
        else:
            response = await client.conversations_history(
                channel=channel_id, oldest=f"{since:.6f}", include_all_metadata=True, limit=200)
    except SlackApiError as exc:
        if _error(exc) in {"missing_scope", "not_in_channel", "channel_not_found"}:
            log.warning("cannot look for an earlier post; sending it", extra={"error": _error(exc)})
            return None
        raise
    for message in response.get("messages") or []:
        metadata = message.get("metadata") or {}
        if (metadata.get("event_payload") or {}).get("key") == key:
            return str(message["ts"])
    return None


_POST_KEYS: ContextVar[tuple[str, list[int]] | None] = ContextVar("ringkas_post_keys", default=None)
LOOK_BACK = 18 * 3600  # s: how far back a keyed post is looked for (well within one digest day)


class KeyedPosts:
    """A Slack client whose chat.postMessage calls made inside a `KeyedPoster` run carry metadata keys
    (`<run key>:0`, `:1`, … in call order) and are looked up before they are made: a message an earlier,
    interrupted attempt of the same run posted is returned as it is instead of being posted again."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def chat_postMessage(self, **kwargs: Any) -> Any:
        keys = _POST_KEYS.get()
        if keys is None:
            return await self._client.chat_postMessage(**kwargs)
        base, counter = keys
        key = f"{base}:{counter[0]}"
        counter[0] += 1
        channel, thread_ts = str(kwargs["channel"]), kwargs.get("thread_ts")
        found = await find_keyed(self._client, channel, thread_ts, key, since=time.time() - LOOK_BACK)
        if found is not None:
            log.info("an earlier attempt had posted it", extra={"channel": channel, "key": key})
            return {"ok": True, "channel": channel, "ts": found}
        kwargs["metadata"] = {"event_type": METADATA_EVENT, "event_payload": {"key": key}}
        return await self._client.chat_postMessage(**kwargs)


class KeyedPoster:
    """Wraps the digest poster: each run's posts are keyed by (team, channel, local date), so a run taken
    over after a crash mid-post finds what was already posted. Other attributes pass through."""

    def __init__(self, post: Any) -> None:
        self._post = post

    def __getattr__(self, name: str) -> Any:
        return getattr(self._post, name)

    async def __call__(self, team_id: str, channel_id: str, digest: Any) -> Any:
        day = getattr(digest, "local_date", None)
        token = _POST_KEYS.set((f"digest:{team_id}:{channel_id}:{day}", [0]))
        try:
            return await self._post(team_id, channel_id, digest)
        finally:
            _POST_KEYS.reset(token)


