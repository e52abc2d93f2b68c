"""A local Slack Web API stand-in for tests and benchmarks.

Point `SLACK_API_URL` at `stub.api_url`. It answers the Web API methods the bot uses, records
every call (`stub.calls`: list of `Call(method, args, headers)`), can answer HTTP 429 with
Retry-After (`stub.rate_limit_next(method, n, retry_after)`), and receives slash-command
`response_url` posts at `stub.response_url(name)` (recorded in `stub.responses`).
Streaming (`chat.startStream` / `appendStream` / `stopStream`): each stream's text is kept in
`stub.streams[ts]`; appending to a stopped or unknown stream fails like Slack does, a channel stream without
recipient_team_id/recipient_user_id is refused, and `stub.refuse_streams = "error_code"` refuses every
`chat.startStream` (a workspace or surface where streaming is not allowed).
Socket Mode: `apps.connections.open` returns a WebSocket URL served here; the socket sends
`hello`, and `await stub.socket_send(envelope)` pushes an envelope; acks land in `stub.socket_acks`.
Like Slack, it keeps the messages posted (`stub.messages`, with their `metadata`; a streamed message from
its first words on), edits them on chat.update, and returns them from conversations.history /
conversations.replies (unless `stub.replies` holds a canned thread). Outages: `stub.fail_status = 500`
answers every method with that status; `await stub.go_down()` / `await stub.come_back()` refuse
connections in between.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T0001"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    response: dict[str, Any] | None = None  # the JSON answered (None while pending or when rate limited)
    at: float = field(default_factory=time.perf_counter)  # when the call arrived (benchmarks)


class SlackStub:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []
        self.socket_acks: list[dict[str, Any]] = []
        self.overrides: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        # response_url posts: (status, body) to answer instead of 200 "ok", e.g. (400, "invalid_blocks")
        self.response_answer: Callable[[dict[str, Any]], tuple[int, str]] | None = None
        self._rate_limits: dict[str, list[float]] = {}
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self.socket_connected = asyncio.Event()
        self.port = 0
        self.replies: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.streams: dict[str, dict[str, Any]] = {}  # chat.startStream ts -> channel, text, stopped
        self.refuse_streams: str | None = None  # an error code answered to every chat.startStream
        self.members: dict[str, list[str]] = {}  # conversations.members per channel (default: U0001 only)
        # conversations.history: channel -> its top-level messages (`remember` a message to make it readable)
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}  # channel -> messages posted, oldest first
        self.fail_status: int | None = None  # every Web API call answers this HTTP status while set
        self.delays: dict[str, float] = {}  # method -> seconds to wait before answering (slow Slack)
        self._site: web.TCPSite | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, name: str = "r") -> str:
        return f"{self.base}/response/{name}"

    def rate_limit_next(self, method: str, count: int = 1, retry_after: float = 1) -> None:
        self._rate_limits.setdefault(method, []).extend([retry_after] * count)

    def remember(self, event: dict[str, Any]) -> None:
        """Make a message event readable through conversations.history / conversations.replies."""
        channel, ts = str(event["channel"]), str(event["ts"])
        stored = {k: v for k, v in event.items() if k not in {"channel", "channel_type", "event_ts"}}
        if event.get("thread_ts") and event["thread_ts"] != ts:
            self.replies.setdefault((channel, ts), []).append(stored)
        else:
            self.history.setdefault(channel, []).append(stored)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def posted(self) -> list[dict[str, Any]]:
        """Args of every chat.postMessage, in order."""
        return [c.args for c in self.calls_to("chat.postMessage")]

    def posted_ts(self, index: int) -> str:
        """The ts Slack gave the `index`-th chat.postMessage."""
        call = self.calls_to("chat.postMessage")[index]
        assert call.response is not None, "that chat.postMessage was not answered"
        return str(call.response["ts"])

    async def wait_for(self, method: str, count: int = 1, timeout: float = 15.0) -> list[Call]:
        """Wait until `method` was called at least `count` times; returns those calls."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.calls_to(method)) < count:
            if loop.time() > deadline:
                raise AssertionError(
                    f"{method} called {len(self.calls_to(method))} times, wanted {count}; "
                    f"calls: {[c.method for c in self.calls]}"
                )
            await asyncio.sleep(0.02)
        return self.calls_to(method)

    async def start(self) -> SlackStub:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._site = site
        return self

    async def go_down(self) -> None:
        """Refuse connections (the port closes) until `come_back`."""
        assert self._site is not None
        await self._site.stop()

    async def come_back(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """A thread as Slack keeps it: the parent (if posted here) and its replies."""
        return [m for m in self.messages.get(channel, []) if m["ts"] == ts or m.get("thread_ts") == ts]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner:
            await self._runner.cleanup()

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if not raw:
            return args
        ctype = request.headers.get("Content-Type", "")
        if "json" in ctype:
            args.update(json.loads(raw))
        else:
            for key, value in parse_qsl(raw.decode(), keep_blank_values=True):
                if key in {"blocks", "attachments"} and value.startswith("["):
                    args[key] = json.loads(value)
                else:
                    args[key] = value
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        headers = {
            k.lower(): v for k, v in request.headers.items() if k.lower() in {"authorization", "user-agent"}
        }
        call = Call(method, args, headers)
        self.calls.append(call)
        if self.fail_status is not None:
            return web.json_response({"ok": False, "error": "internal_error"}, status=self.fail_status)
        if self.delays.get(method):
            await asyncio.sleep(self.delays[method])
        limits = self._rate_limits.get(method)
        if limits:
            retry_after = limits.pop(0)
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(int(retry_after))},
            )
        answer = self.overrides.get(method)
        call.response = answer(args) if answer is not None else self._answer(method, args)
        return web.json_response(call.response)

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"  # now, like Slack's (history's `oldest` works)

    @staticmethod
    def _stream_text(args: dict[str, Any]) -> str:
        text = str(args.get("markdown_text") or "")
        for chunk in args.get("chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                text += str(chunk.get("text") or "")
        return text

    def _streaming(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "chat.startStream":
            if self.refuse_streams:
                return {"ok": False, "error": self.refuse_streams}
            channel = str(args.get("channel") or "")
            if not args.get("thread_ts"):
                return {"ok": False, "error": "invalid_arguments"}
            recipients = args.get("recipient_team_id") and args.get("recipient_user_id")
            if channel[:1] in {"C", "G"} and not recipients:
                return {"ok": False, "error": "missing_recipient_team_id"}
            ts = self._next_ts()
            self.streams[ts] = {"channel": channel, "thread_ts": args["thread_ts"],
                                "text": self._stream_text(args), "stopped": False, "blocks": None}
            # Like Slack, a streamed message is a message of the thread from its first words on.
            self.messages.setdefault(channel, []).append(
                {"type": "message", "ts": ts, "text": self.streams[ts]["text"], "bot_id": BOT_ID,
                 "thread_ts": args["thread_ts"], "streaming": True})
            return {"ok": True, "channel": channel, "ts": ts}
        stream = self.streams.get(str(args.get("ts")))
        if stream is None or stream["stopped"]:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        stream["text"] += self._stream_text(args)
        stored = self._message(stream["channel"], str(args.get("ts")))
        if method == "chat.stopStream":
            stream["stopped"] = True
            stream["blocks"] = args.get("blocks")
        if stored is not None:
            stored["text"] = stream["text"]
            if method == "chat.stopStream":
                stored.pop("streaming", None)
                if args.get("blocks"):
                    stored["blocks"] = args["blocks"]
                metadata = self._metadata(args)
                if metadata:
                    stored["metadata"] = metadata
        return {"ok": True, "channel": stream["channel"], "ts": args.get("ts")}

    def _message(self, channel: str, ts: str) -> dict[str, Any] | None:
        for stored in self.messages.get(channel, []):
            if stored["ts"] == ts:
                return stored
        return None

    @staticmethod
    def _metadata(args: dict[str, Any]) -> Any:
        metadata = args.get("metadata")
        return json.loads(metadata) if isinstance(metadata, str) else metadata

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method in {"chat.startStream", "chat.appendStream", "chat.stopStream"}:
            return self._streaming(method, args)
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://stub.slack.test/",
                "team": "Stub Team",
                "user": "ringkas",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
            }
        if method in {"chat.postMessage", "chat.startStream"}:
            ts = self._next_ts()
            message = {"type": "message", "ts": ts, "text": args.get("text", ""), "bot_id": BOT_ID}
            if "thread_ts" in args:
                message["thread_ts"] = args["thread_ts"]
            metadata = args.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            if metadata:
                message["metadata"] = metadata
            stored = dict(message)
            if args.get("blocks"):
                stored["blocks"] = args["blocks"]  # what people read beside `text` (the notification)
            self.messages.setdefault(str(args.get("channel")), []).append(stored)
            return {"ok": True, "channel": args.get("channel"), "ts": ts, "message": message}
        if method == "chat.update":
            stored = self._message(str(args.get("channel")), str(args.get("ts")))
            if stored is not None:
                stored["text"] = args.get("text", "")
                stored.pop("streaming", None)
                if "blocks" in args:
                    stored["blocks"] = args["blocks"]
                if self._metadata(args):
                    stored["metadata"] = self._metadata(args)
        if method in {"chat.update", "chat.appendStream", "chat.stopStream"}:
            return {
                "ok": True,
                "channel": args.get("channel"),
                "ts": args.get("ts"),
                "text": args.get("text", ""),
            }
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "chat.getPermalink":
            return {"ok": True, "permalink": f"https://stub.slack.test/archives/{args.get('channel')}/p1"}
        if method == "conversations.info":
            return {"ok": True, "channel": {"id": args.get("channel"), "name": "general", "is_member": True}}
        if method == "conversations.members":
            return {"ok": True, "members": self.members.get(str(args.get("channel")), ["U0001"]),
                    "response_metadata": {"next_cursor": ""}}
        if method == "conversations.replies":
            key = (str(args.get("channel")), str(args.get("ts")))
            if key in self.replies:
                return {"ok": True, "messages": self.replies[key], "has_more": False}
            return {"ok": True, "messages": self.thread(*key), "has_more": False}
        if method == "conversations.history":
            # people's messages made readable with `remember`, and the bot's own top-level posts; newest first
            oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or 9e12)
            channel = str(args.get("channel"))
            top = [m for m in [*self.history.get(channel, []), *self.messages.get(channel, [])]
                   if "thread_ts" not in m and oldest <= float(m["ts"]) <= latest]
            top.sort(key=lambda m: float(m["ts"]), reverse=True)
            return {"ok": True, "messages": top[: int(args.get("limit") or 1000)], "has_more": False}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        if method == "users.info":
            return {"ok": True, "user": {"id": args.get("user"), "tz": "Asia/Jakarta", "locale": "id-ID"}}
        return {"ok": True}

    async def _response(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = dict(parse_qsl(raw.decode()))
        self.responses.append((request.match_info["name"], body))
        if self.response_answer is not None:
            status, text = self.response_answer(body)
            return web.Response(status=status, text=text)
        return web.Response(text="ok")

    async def wait_for_response(
        self, count: int = 1, timeout: float = 15.0
    ) -> list[tuple[str, dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.responses) < count:
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.responses)} response_url posts, wanted {count}")
            await asyncio.sleep(0.02)
        return self.responses

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "stub"}})
        self.socket_connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.socket_acks.append(json.loads(msg.data))
        self._sockets.remove(ws)
        return ws

    async def socket_send(self, envelope: dict[str, Any]) -> None:
        await asyncio.wait_for(self.socket_connected.wait(), 15)
        await self._sockets[-1].send_json(envelope)
